"""``--layout auto`` on a CPU that runs the module: build each candidate layout, keep the fastest.

A fixed table cannot know the answer: NHWC and NCHWc are within a few per cent of each
other on x86 and trade places per model, and tuning records (kept per workload, so per
layout) make one layout's kernels much faster than the other's. So ``auto`` builds the
candidates of ``mcc.build.pipeline.AUTO_LAYOUT``, times each on the same seeded inputs,
checks that they agree, and keeps the fastest. Where that cannot or need not be done (a
cross target, one candidate, a model with no convolution or too small to matter) the
table's first candidate is used without measuring.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tvm

from mcc.errors import MccError

# Below this many conv FLOPs the layouts differ by less than the timing noise.
MEASURE_MIN_CONV_FLOPS = 200e6
_TIMING_REPEAT = 10
_TIMING_SECONDS = 3.0


@dataclass
class LayoutChoice:
    """Which layout ``auto`` took, and the median latency of each candidate (ms)."""

    chosen: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why it was dropped

    def summary(self) -> str:
        times = ", ".join(f"{name} {ms:.2f} ms" for name, ms in self.timings_ms.items())
        dropped = "".join(f"; {name} dropped: {why}" for name, why in self.skipped.items())
        return f"auto -> {self.chosen} ({times}){dropped}"

    def to_json(self) -> dict:
        return {"chosen": self.chosen, "timings_ms": {k: round(v, 6) for k, v in
                                                      self.timings_ms.items()},
                "skipped": dict(self.skipped)}


def layouts_to_measure(mod: tvm.IRModule, config) -> tuple[str, ...]:
    """The candidates worth building and timing for this model and config (empty: none)."""
    from mcc.build.pipeline import auto_candidates
    from mcc.passes.model_cost import model_cost

    if (config.layout != "auto" or not config.target.runs_on_host()
            or config.precision == "bf16"):  # bf16 kernels are NHWC: auto's first
        return ()
    candidates = auto_candidates(config.target.kind)
    if len(candidates) < 2 or model_cost(mod).conv_flops < MEASURE_MIN_CONV_FLOPS:
        return ()
    return candidates


def choose_layout(candidates, lower: Callable[[str], object], feed: dict,
                  input_names: list[str], say) -> tuple[object, LayoutChoice]:
    """Lower with each candidate layout; return the fastest lowering and the choice.

    ``lower(layout)`` returns an object with an ``executable``; a candidate that fails to
    build, or whose outputs disagree with the first working candidate, is dropped. The
    candidates are timed in alternation and each keeps its best run, so that load from
    other processes (which only ever adds time) hits all of them alike."""
    from mcc.runtime.vm_runner import vm_runner

    choice, built, expected = LayoutChoice(""), {}, None
    for layout in candidates:
        say(f"[mcc] layout   auto: building {layout} to time it")
        try:
            lowered = lower(layout)
        except MccError as err:
            choice.skipped[layout] = str(err)
            continue
        run = vm_runner(lowered.executable, input_names)
        outputs = run(feed)  # also the warm-up
        if expected is None:
            expected = outputs
        elif not _agree(outputs, expected):
            choice.skipped[layout] = "outputs differ from the other layout's"
            continue
        built[layout] = (lowered, run)
    if not built:
        raise MccError("--layout auto: no candidate layout built: " +
                       "; ".join(f"{k}: {v}" for k, v in choice.skipped.items()))
    choice.timings_ms = _best_times({k: run for k, (_, run) in built.items()}, feed)
    choice.chosen = min(choice.timings_ms, key=choice.timings_ms.get)
    return built[choice.chosen][0], choice


def _best_times(runs: dict, feed: dict) -> dict[str, float]:
    """Best-of-N milliseconds per runner, the runners called in turn, N rounds or a time cap."""
    best = dict.fromkeys(runs, float("inf"))
    deadline = time.perf_counter() + _TIMING_SECONDS
    for done in range(_TIMING_REPEAT):
        if done >= 3 and time.perf_counter() > deadline:
            break
        for name, run in runs.items():
            start = time.perf_counter()
            run(feed)
            best[name] = min(best[name], (time.perf_counter() - start) * 1e3)
    return best


def _agree(outputs, expected) -> bool:
    return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-3, atol=1e-3)
               for a, b in zip(outputs, expected))
