"""One conv + bias + ReLU, direct against Winograd F(4x4, 3x3), under mcc's default rules.

    .venv/bin/python benchmarks/winograd.py [--rounds 5]

For each 3x3 stride-1 shape of ResNet-50 (NHWC), builds the same Relax function twice
through mcc's graph pipeline and default schedule rules (no tuning records), once with
``mcc.Winograd`` and once without, checks that the outputs agree, and times them in
alternating rounds on the same input (weights stay in cache between runs: hot timings).
"""

from __future__ import annotations

import argparse

import numpy as np
import tvm
from tvm import relax

from mcc.build.pipeline import graph_passes
from mcc.schedule import schedule
from mcc.targets.host import host_tvm_target

SHAPES = [(56, 64), (28, 128), (14, 256)]  # output map, channels (in = out)


def conv_bias_relu(hw: int, channels: int) -> tvm.IRModule:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, 3, channels, channels)) * 0.05).astype("float32")
    bias = rng.standard_normal(channels).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, hw, hw, channels), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), padding=[1, 1, 1, 1],
                                           data_layout="NHWC", kernel_layout="HWIO"))
            out = bb.emit_output(relax.op.nn.relu(relax.op.add(y, relax.const(bias))))
        bb.emit_func_output(out)
    return bb.get()


def build(mod: tvm.IRModule, target, winograd: bool):
    with target:
        for _, graph_pass in graph_passes("NHWC", winograd=winograd):
            mod = graph_pass(mod)
    mod, _ = schedule(mod, target, family="none")  # no such log family: rules only
    return relax.VirtualMachine(relax.build(mod, target), tvm.cpu())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    target = tvm.target.Target(host_tvm_target())
    print("| output map x channels | direct ms | Winograd ms | Winograd / direct | max abs diff |")
    print("|---|---|---|---|---|")
    for hw, channels in SHAPES:
        mod = conv_bias_relu(hw, channels)
        x = np.random.default_rng(1).standard_normal((1, hw, hw, channels)).astype("float32")
        arg = tvm.runtime.tensor(x)
        vms = {wino: build(mod, target, wino) for wino in (False, True)}
        diff = np.abs(vms[True]["main"](arg).numpy() - vms[False]["main"](arg).numpy()).max()
        times = {False: [], True: []}
        for _ in range(args.rounds):
            for wino, vm in vms.items():
                timer = vm.time_evaluator("main", tvm.cpu(), number=20, repeat=1)
                times[wino].append(timer(arg).mean * 1e3)
        direct, wino = np.median(times[False]), np.median(times[True])
        print(f"| {hw}x{hw} x {channels} | {direct:.3f} | {wino:.3f} | {wino / direct:.2f} "
              f"| {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
