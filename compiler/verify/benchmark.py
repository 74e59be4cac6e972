"""Batch-1 latency of an mcc module against the reference runtime, in one process.

Both sides get the same seeded inputs; each is warmed up, then timed call by
call, and the median and 90th percentile are reported with their ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcc.errors import MccError
from mcc.runtime.tensors import random_inputs


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    p90_ms: float
    runs: int

    def to_json(self) -> dict:
        return {"name": self.name, "median_ms": self.median_ms, "p90_ms": self.p90_ms,
                "runs": self.runs}


@dataclass(frozen=True)
class BenchReport:
    model: str
    target: str
    mcc: Timing
    reference: Timing | None

    @property
    def ratio(self) -> float | None:
        return self.mcc.median_ms / self.reference.median_ms if self.reference else None

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "mcc": self.mcc.to_json(),
                "reference": self.reference.to_json() if self.reference else None,
                "ratio": self.ratio}

    def lines(self) -> list[str]:
        out = [f"{'runtime':<12} {'median ms':>10} {'p90 ms':>10}"]
        for t in (self.mcc, self.reference):
            if t:
                out.append(f"{t.name:<12} {t.median_ms:>10.3f} {t.p90_ms:>10.3f}")
        if self.reference:
            out.append(f"mcc / {self.reference.name}: {self.ratio:.2f}x "
                       f"({'slower' if self.ratio > 1 else 'faster or equal'})")
        return out


def time_calls(name: str, fn: Callable[[], object], repeat: int, warmup: int,
               max_seconds: float = 120.0, clock: Callable[[], float] = time.perf_counter
               ) -> Timing:
    """Median and p90 of ``repeat`` calls after ``warmup`` calls (stops early past max_seconds).
    ``clock``: wall time by default; ``time.process_time`` for CPU time (one thread)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < repeat and (len(samples) < 3 or time.perf_counter() < deadline):
        start = clock()
        fn()
        samples.append((clock() - start) * 1e3)
    samples.sort()
    p90 = samples[min(len(samples) - 1, int(round(0.9 * (len(samples) - 1))))]
    return Timing(name, statistics.median(samples), p90, len(samples))


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int = 5, repeat: int = 5,
                     warmup: int = 2, max_seconds: float = 60.0,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, Timing]:
    """Each call timed in ``rounds`` blocks of ``repeat`` calls, the calls' blocks in turn,
    so that load from other processes (which only adds time) hits all of them alike; per
    call the median of its block medians (p90: of its block p90s)."""
    blocks: dict[str, list[Timing]] = {name: [] for name in calls}
    deadline = time.perf_counter() + max_seconds
    for done in range(rounds):
        if done >= 2 and time.perf_counter() > deadline:
            break
        for name, fn in calls.items():
            blocks[name].append(time_calls(name, fn, repeat, warmup if done == 0 else 0,
                                           max_seconds, clock))
    return {name: Timing(name, statistics.median(t.median_ms for t in got),
                         statistics.median(t.p90_ms for t in got), sum(t.runs for t in got))
            for name, got in blocks.items()}


def bench(model, target=None, input_shapes=None, repeat: int = 50, warmup: int = 3,
          reference=None, progress=None) -> BenchReport:
    """Compile ``model`` (or load a ``.so``) and time it against its reference runtime.

    For a ``.so``, the reference is ``reference`` (an .onnx / .pt2 path) or, if it
    still exists, the source model recorded in the module's metadata.
    """
    import mcc
    from mcc.frontends.feeds import module_rules
    from mcc.frontends.references import reference_for

    rules = None
    if isinstance(model, (str, Path)) and str(model).endswith(".so"):
        module = mcc.load(model)
        source = reference or module.metadata.get("source", {}).get("path")
        # in-range integer inputs: the module's recorded rules, else from the ONNX model
        rules = module_rules(module.metadata, source if source and Path(source).exists()
                             and str(source).endswith(".onnx") else None)
        ref_name, ref_fn = (reference_for(source, [t.name for t in module.outputs])
                            if source and Path(source).exists() else (None, None))
        if ref_fn is None and progress:
            progress("[mcc] no reference model found: timing mcc only (pass --reference)")
        target_name = module.metadata["target"]["name"]
    else:
        compiled = mcc.compile(model, target=target, input_shapes=input_shapes,
                               progress=progress)
        module, ref_name, ref_fn = compiled.module, compiled.reference_name, compiled.reference
        target_name = compiled.metadata["target"]["name"]
    return time_module(module, ref_name, ref_fn, target_name, repeat, warmup, progress,
                       str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                       rules=rules)


def time_module(module, ref_name, ref_fn, target_name: str, repeat: int, warmup: int,
                progress=None, label: str = "", max_seconds: float = 120.0,
                rules: dict | None = None) -> BenchReport:
    """Time a loaded module and its reference on the same seeded batch-1 inputs.

    Integer inputs follow ``rules`` (mcc.frontends.feeds), by default the module's recorded ones."""
    if rules is None:
        from mcc.frontends.feeds import module_rules

        rules = module_rules(getattr(module, "metadata", None) or {})
    feed = random_inputs(module.inputs, seed=0, symbolic_size=1, rules=rules)
    if progress:
        progress(f"[mcc] timing {repeat} runs each (after {warmup} warm-up runs)")
    mcc_timing = time_calls("mcc", module.runner(feed), repeat, warmup, max_seconds)
    ref_timing = (time_calls(ref_name, lambda: ref_fn(feed), repeat, warmup, max_seconds)
                  if ref_fn else None)
    if not mcc_timing.runs:
        raise MccError("no timing runs completed")
    return BenchReport(label, target_name, mcc_timing, ref_timing)
