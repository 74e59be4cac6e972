"""``--layout auto`` on a CPU that runs the module: build each candidate layout, keep the fastest.

A fixed table cannot know the answer: NHWC and NCHWc are within a few per cent of each
other on x86 and trade places per model, and tuning records (kept per workload, so per
layout) make one layout's kernels much faster than the other's. So ``auto`` builds the
candidates of ``mcc.build.pipeline.AUTO_LAYOUT``, times each on the same seeded inputs,
checks that they agree, and keeps the fastest. Where that cannot or need not be done (a
cross target, one candidate, a model with no convolution or too small to matter) the
table's first candidate is used without measuring.

The timing must give the same answer on a loaded machine: wall-clock best-of-N flipped
with load (one compile of a MobileNet-style model kept the layout 10% slower). So each
candidate runs on one thread of the calling thread's pool, timed by that thread's CPU
time, which does not count other processes' time slices; in alternating blocks (so drift
hits all candidates alike), compared by each one's fastest block (load only ever adds CPU time:
medians and paired ratios of blocks still flipped SqueezeNet beside a busy loop);
and another candidate replaces the default only when it is ``MARGIN`` faster, since
differences smaller than that flip between runs and are not worth leaving the default.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tvm

from mcc.errors import MccError

# Below this many conv FLOPs the layouts differ by less than the timing noise.
MEASURE_MIN_CONV_FLOPS = 200e6
# Another candidate must be this much faster than the default to be taken: SqueezeNet's two
# layouts, 1% apart on an idle machine, measured up to 9% the other way (medians of blocks)
# beside a busy loop; fastest blocks kept them within 3%.
MARGIN = 0.05
_MIN_BLOCKS, _MAX_BLOCKS = 7, 25  # blocks per candidate
_BLOCK_SECONDS = 0.01  # each block calls the module enough times to take about this long
_TIMING_SECONDS = 3.0  # CPU seconds of timing, all candidates together, after _MIN_BLOCKS


@dataclass
class LayoutChoice:
    """Which layout ``auto`` took, and each candidate's fastest one-thread CPU time (ms)."""

    chosen: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why it was dropped

    def summary(self) -> str:
        times = ", ".join(f"{name} {ms:.2f} ms" for name, ms in self.timings_ms.items())
        dropped = "".join(f"; {name} dropped: {why}" for name, why in self.skipped.items())
        return f"auto -> {self.chosen} ({times}, one-thread CPU time){dropped}"

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
    first candidate that builds is the default the others must beat by ``MARGIN``."""
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
    with _one_thread() as clock:
        blocks = block_times({k: run for k, (_, run) in built.items()}, feed, clock)
    choice.timings_ms = {name: min(ms) for name, ms in blocks.items()}
    choice.chosen = pick(blocks)
    return built[choice.chosen][0], choice


def pick(blocks_ms: dict[str, list[float]]) -> str:
    """The first (default) candidate, unless another is ``MARGIN`` faster: then the fastest.
    Each compared by its fastest block: other processes only add to a block's CPU time
    (they evict its caches, share the memory bus), so the least disturbed block is the
    nearest to what the module costs on a quiet machine."""
    best = {name: min(ms) for name, ms in blocks_ms.items()}
    default, fastest = next(iter(best)), min(best, key=best.get)
    return fastest if best[fastest] < best[default] * (1 - MARGIN) else default


def block_times(runs: dict, feed: dict, clock=time.thread_time) -> dict[str, list[float]]:
    """CPU milliseconds per call of each runner, one block of calls per runner per round (the
    order reversed every round): at least ``_MIN_BLOCKS`` rounds, then until ``_MAX_BLOCKS``
    or ``_TIMING_SECONDS``. ``clock``: this thread's CPU time (seconds)."""
    calls, blocks = {}, {name: [] for name in runs}
    for name, run in runs.items():  # one timed call sizes the blocks
        start = clock()
        run(feed)
        calls[name] = max(1, round(_BLOCK_SECONDS / max(clock() - start, 1e-6)))
    spent, order = 0.0, list(runs)
    for done in range(_MAX_BLOCKS):
        if done >= _MIN_BLOCKS and spent > _TIMING_SECONDS:
            break
        for name in order:
            start = clock()
            for _ in range(calls[name]):
                runs[name](feed)
            elapsed = clock() - start
            spent += elapsed
            blocks[name].append(elapsed * 1e3 / calls[name])
        order.reverse()
    return blocks


@contextlib.contextmanager
def _one_thread():
    """The calling thread's TVM pool at one thread (the kernels then run on this thread, so
    its CPU time is all their work), restored afterwards to the thread count it had (the
    user's TVM_NUM_THREADS, or mcc's default). Yields the clock: this thread's CPU time,
    or the process's where TVM has no pool controls (the pool then as it is). Python's
    garbage collector is off meanwhile, as ``timeit`` does: a collection of the compile's
    garbage is no part of a module's time."""
    threads = tvm.get_global_func("runtime.NumThreads", allow_missing=True)
    configure = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
    before = int(threads()) if threads is not None and configure is not None else None
    collecting = gc.isenabled()
    gc.disable()
    if before is not None:
        configure(1, 1)  # 1: TVM's default affinity mode (big cores), as the pool starts with
    try:
        yield time.thread_time if before is not None else time.process_time
    finally:
        if before is not None:
            configure(1, before)
        if collecting:
            gc.enable()


def _agree(outputs, expected) -> bool:
    return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-3, atol=1e-3)
               for a, b in zip(outputs, expected))
