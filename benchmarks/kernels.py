"""Where the time goes: per-kernel latency and GFLOP/s of an untuned mcc build, against peak.

    .venv/bin/python benchmarks/kernels.py resnet50 [--top 10] [--runs 5]

Builds the model like ``mcc compile`` (same passes, rules and target), runs it
in the Relax VM with an instrument that times every kernel call, and prints
the hottest kernels with their share of the total, their FLOPs (2 x the
multiply-adds of the kernel's reduction) and the achieved GFLOP/s against
this CPU's fp32 peak: cores x 2 FMA pipes x SIMD lanes x 2 flops x clock
(clock from /proc/cpuinfo; AVX-512 Zen 4/5 and Intel server cores issue two
vector FMAs per cycle).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import export_onnx  # noqa: E402


def peak_gflops(preset, threads=None) -> tuple[float, str]:
    from mcc.schedule.rules import cpu_info

    info = cpu_info(preset.tvm_target())
    if threads:
        info = type(info)(info.vector_bits, info.vector_registers, threads)
    mhz = max(float(line.split(":")[1]) for line in open("/proc/cpuinfo")
              if line.startswith("cpu MHz"))
    lanes = info.lanes("float32")
    peak = info.cores * 2 * lanes * 2 * mhz / 1e3
    return peak, f"{info.cores} cores x 2 FMA x {lanes} lanes x 2 flops x {mhz / 1e3:.2f} GHz"


def kernel_flops(func) -> int:
    """2 x iterations of every reduction block (the multiply-adds of conv / matmul / pooling)."""
    import tvm
    import tvm_ffi
    from tvm import tirx

    total = 0

    def visit(block):
        nonlocal total
        if any(iv.iter_type == tirx.IterVar.CommReduce for iv in block.iter_vars):
            n = 2
            for iv in block.iter_vars:
                n *= int(iv.dom.extent)
            total += n

    tvm_ffi.structural_walk(func.body, (tvm.s_tir.SBlock, visit), order="post")
    return total


def kernel_shapes(func) -> str:
    """``input -> output`` shapes of a kernel (first and last buffer parameters)."""
    def text(buf):
        return "x".join(str(int(d)) for d in buf.shape)

    return f"{text(func.params[0])} -> {text(func.params[-1])}"


def main() -> None:
    import numpy as np
    import tvm
    from tvm import relax

    from mcc.build.lower import build
    from mcc.build.pipeline import optimize
    from mcc.frontends import import_model
    from mcc.schedule import schedule
    from mcc.targets import resolve_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by process CPU time (with TVM_NUM_THREADS=1: what one core "
                             "spends, robust to other load on a shared machine)")
    args = parser.parse_args()

    preset = resolve_target("x86")
    target = preset.tvm_target()
    imported = import_model(export_onnx(args.model, HERE / "onnx"), {}, None)
    mod, _ = optimize(imported.mod, target, layout=args.layout)
    mod, _ = schedule(mod, target, preset.family)
    flops = {gv.name_hint: kernel_flops(f) for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)}
    shapes = {gv.name_hint: kernel_shapes(f) for gv, f in mod.functions_items()
              if isinstance(f, tvm.tirx.PrimFunc)}
    vm = relax.VirtualMachine(build(mod, target), tvm.cpu())
    rng = np.random.default_rng(0)
    feed = [tvm.runtime.tensor(rng.random([int(d) for d in t.shape]).astype(t.dtype)
                               if t.dtype.startswith("float") else
                               rng.integers(0, 100, [int(d) for d in t.shape]).astype(t.dtype))
            for t in imported.inputs]
    vm["main"](*feed)
    times, calls, started = collections.defaultdict(float), collections.Counter(), {}
    clock = time.process_time if args.cpu_time else time.perf_counter

    def instrument(func, symbol, before, ret, *rest):
        if before:
            started[symbol] = clock()
        else:
            times[symbol] += clock() - started[symbol]
            calls[symbol] += 1
        return 0

    start = clock()
    for _ in range(args.runs):
        vm["main"](*feed)
    plain_ms = (clock() - start) / args.runs * 1e3
    vm.set_instrument(instrument)
    for _ in range(args.runs):
        vm["main"](*feed)
    total = sum(times.values()) / args.runs
    peak, peak_text = peak_gflops(preset, threads=1 if args.cpu_time else None)
    print(f"{args.model}: {plain_ms:.1f} ms per run ({total * 1e3:.1f} ms in timed calls); "
          f"peak {peak:.0f} GFLOP/s = {peak_text}\n")
    print("| kernel | shapes | calls | ms per run | share | GFLOP per call | GFLOP/s "
          "| % of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for symbol, t in sorted(times.items(), key=lambda kv: -kv[1])[:args.top]:
        per_call = t / calls[symbol]
        f = flops.get(symbol, 0)
        rate = f / per_call / 1e9 if f else 0.0
        print(f"| {symbol} | {shapes.get(symbol, '')} | {calls[symbol] // args.runs} "
              f"| {t / args.runs * 1e3:.2f} "
              f"| {100 * t / args.runs / total:.0f}% | {f / 1e9:.3f} | {rate:.0f} "
              f"| {100 * rate / peak:.0f}% |")


if __name__ == "__main__":
    main()
