"""Where an int8 module's time goes: per-kernel CPU time of one thread, grouped by kind.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/int8_profile.py MODULE.so [--runs 5]
                                                                  [--top 25]

MODULE.so is any mcc module (``benchmarks/int8.py`` leaves resnet50_int8.so in
benchmarks/onnx/). Every kernel call of the Relax VM is timed by this process's CPU time
(robust to other load on a shared machine); kernels are grouped into int8 convolution /
dense (``mcc_qconv2d``, with whatever epilogue FuseOps fused into them), standalone
quantize (``multiply ... cast`` to uint8), pooling, layout, VM builtins (allocation), and
the rest.
"""

from __future__ import annotations

import argparse
import collections
import time


def kind(symbol: str) -> str:
    if "qconv2d" in symbol:
        return "int8 conv/dense (fused epilogue)"
    if symbol.startswith("vm.builtin"):
        return "VM builtins (allocation, checks)"
    if "pool" in symbol:
        return "pooling"
    if "round" in symbol and "cast" in symbol:
        return "standalone quantize to uint8"
    if "transpose" in symbol or "reshape" in symbol:
        return "layout (transpose / reshape)"
    return "other fp32"


def main() -> None:
    import mcc
    from mcc.runtime.tensors import random_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    module = mcc.load(args.module)
    run = module.runner(random_inputs(module.inputs, seed=7))
    run(), run()
    start = time.process_time()
    for _ in range(args.runs):
        run()
    plain_ms = (time.process_time() - start) / args.runs * 1e3
    times, calls, started = collections.defaultdict(float), collections.Counter(), {}

    def instrument(func, symbol, before, ret, *rest):
        if before:
            started[symbol] = time.process_time()
        else:
            times[symbol] += time.process_time() - started[symbol]
            calls[symbol] += 1
        return 0

    module._vm.set_instrument(instrument)
    for _ in range(args.runs):
        run()
    per_run = {s: t / args.runs * 1e3 for s, t in times.items()}
    total = sum(per_run.values())
    print(f"{args.module}: {plain_ms:.2f} ms CPU time per run uninstrumented, "
          f"{total:.2f} ms in timed calls\n")
    groups = collections.defaultdict(float)
    for symbol, ms in per_run.items():
        groups[kind(symbol)] += ms
    print("| kind | ms per run | share |")
    print("|---|---|---|")
    for name, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {ms:.2f} | {100 * ms / total:.0f}% |")
    print("\n| kernel | calls per run | ms per run |\n|---|---|---|")
    for symbol, ms in sorted(per_run.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"| {symbol} | {calls[symbol] // args.runs} | {ms:.3f} |")


if __name__ == "__main__":
    main()
