"""Where a compiled module's time goes, kernel by kernel (``mcc profile``).

TVM 0.27's Relax VM has no ``profile=True`` any more; its instrument hook
(``VirtualMachine.set_instrument``) is called before and after every call instruction,
kernels and VM builtins (allocation, reshapes, shape checks) alike, so timing those
calls gives the per-kernel table. The uninstrumented end-to-end time is measured first:
its gap to the sum of the calls is the VM's own dispatch cost, which matters for
sub-millisecond models. Each kernel's schedule source and FLOPs come from the module's
metadata (``schedule.kernels``, written by mcc.schedule at compile time).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int  # per run
    ms: float  # per run, all calls
    schedule: str  # "record", "rule <Name>", "int8 kernel", "naive", "VM builtin", ...
    flops: int | None  # per call
    parallel: bool | None  # uses the thread pool (None: not a kernel of this module)

    @property
    def us_per_call(self) -> float:
        return 1e3 * self.ms / max(self.calls, 1)

    @property
    def gflops(self) -> float | None:
        if not self.flops or self.ms <= 0:
            return None
        return self.flops * self.calls / (self.ms * 1e-3) / 1e9

    def to_json(self) -> dict:
        return {"name": self.name, "calls": self.calls, "ms": self.ms,
                "us_per_call": self.us_per_call, "schedule": self.schedule,
                "flops": self.flops, "gflops": self.gflops, "parallel": self.parallel}


@dataclass(frozen=True)
class Profile:
    end_to_end_ms: float  # median uninstrumented run
    rounds: int
    kernels: list[KernelTime] = field(default_factory=list)  # slowest first
    hook_us: float = 0.0  # instrumentation cost per call, subtracted from every call

    @property
    def calls_ms(self) -> float:
        return sum(k.ms for k in self.kernels)

    def to_json(self) -> dict:
        return {"end_to_end_ms": self.end_to_end_ms, "rounds": self.rounds,
                "calls_ms": self.calls_ms, "hook_us": self.hook_us,
                "kernels": [k.to_json() for k in self.kernels]}

    def lines(self, top: int | None = 20) -> list[str]:
        total = self.calls_ms or 1.0
        calls = sum(k.calls for k in self.kernels)
        out = [f"end to end {self.end_to_end_ms:.3f} ms (median of {self.rounds}, "
               f"uninstrumented); {calls} calls per run taking {self.calls_ms:.3f} ms "
               f"(instrumented, less {self.hook_us:.1f} us hook cost per call)",
               f"{'ms/run':>9} {'share':>6} {'calls':>5} {'us/call':>9} {'GFLOP/s':>8} "
               f"{'threads':>7}  {'schedule':<22} kernel"]
        shown = self.kernels if top is None else self.kernels[:top]
        for k in shown:
            rate = f"{k.gflops:8.1f}" if k.gflops is not None else f"{'-':>8}"
            threads = {True: "pool", False: "1", None: "-"}[k.parallel]
            out.append(f"{k.ms:9.3f} {100 * k.ms / total:5.1f}% {k.calls:5d} "
                       f"{k.us_per_call:9.1f} {rate} {threads:>7}  {k.schedule:<22} "
                       f"{_short(k.name)}")
        if len(shown) < len(self.kernels):
            rest = self.kernels[len(shown):]
            rest_ms = sum(k.ms for k in rest)
            out.append(f"{rest_ms:9.3f} {100 * rest_ms / total:5.1f}% "
                       f"{sum(k.calls for k in rest):5d}  ... {len(rest)} more")
        return out


def _short(name: str, width: int = 72) -> str:
    """Fused kernel names list every op they hold; the JSON output keeps them whole."""
    return name if len(name) <= width else name[:width - 3] + "..."


def _timed(run, rounds: int) -> float:
    wall = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall)


def profile_module(module, feed: dict, rounds: int = 20, warmup: int = 3) -> Profile:
    """Time ``module`` (a loaded mcc.runtime.Module) on ``feed``: end to end, then every
    VM call over ``rounds`` instrumented runs.

    Each timed call also holds part of the hook's own cost (a Python call from the VM,
    microseconds: it dominates tiny kernels). That cost is measured with a hook that
    does nothing and subtracted from every call."""
    import tvm

    vm = module._vm
    run = module.runner(feed)
    for _ in range(warmup):
        run()
    end_to_end = _timed(run, rounds)

    device = module._device
    spent: dict[str, float] = {}
    count: dict[str, int] = {}
    started: list[float] = []

    def instrument(func, symbol, before_run, ret_value, *args):
        device.sync()
        if before_run:
            started.append(time.perf_counter())
        else:
            spent[symbol] = spent.get(symbol, 0.0) + time.perf_counter() - started.pop()
            count[symbol] = count.get(symbol, 0) + 1
        return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual

    def idle(func, symbol, before_run, ret_value, *args):
        device.sync()
        return 0

    def hooked(hook):
        vm.set_instrument(tvm.runtime.convert(hook) if hasattr(tvm.runtime, "convert")
                          else hook)

    try:
        hooked(instrument)
        for _ in range(rounds):
            run()
        calls = sum(count.values()) / rounds
        hooked(idle)
        hook_cost = max(0.0, (_timed(run, rounds) - end_to_end) / max(calls, 1) / 2)
    finally:
        vm.set_instrument(None)

    table = module.metadata.get("schedule", {}).get("kernels", {})
    kernels = []
    for symbol, seconds in spent.items():
        info = table.get(symbol)
        schedule = info["schedule"] if info else ("VM builtin" if symbol.startswith("vm.")
                                                  else "-")
        own = max(0.0, seconds - count[symbol] * hook_cost)
        kernels.append(KernelTime(symbol, count[symbol] // rounds, 1e3 * own / rounds,
                                  schedule, info.get("flops") if info else None,
                                  info.get("parallel") if info else None))
    kernels.sort(key=lambda k: -k.ms)
    return Profile(1e3 * end_to_end, rounds, kernels, 1e6 * hook_cost)
