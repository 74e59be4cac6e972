"""Throughput of mcc's int8 kernel alone (compiler/int8_kernels.py), VNNI vs generic schedule.

    .venv/bin/python benchmarks/int8_kernel.py [--repeat 20] [--cpu-time] [--vnni-only]

Shapes from ResNet-50 and BERT-base; GOP/s counts a multiply-add as 2 operations.
Each result is checked against int64 numpy arithmetic before it is timed.
``--cpu-time``: one thread, timed by this process's CPU time (for a shared machine);
``--vnni-only``: skip the (slow) generic schedule.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--cpu-time" in sys.argv:  # before TVM starts its thread pool
    os.environ["TVM_NUM_THREADS"] = "1"

import numpy as np
import tvm

from mcc.passes.int8_kernels import QConvShape, pack_weight, qconv2d_func
from mcc.schedule.rules.int8 import has_vnni, schedule_kernel
from mcc.targets import resolve_target

SHAPES = {
    "resnet50 3x3 64->64 @56x56": QConvShape(1, 56, 56, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1), 0),
    "resnet50 1x1 256->64 @56x56": QConvShape(1, 56, 56, 256, 64, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "resnet50 1x1 128->512 @28x28": QConvShape(1, 28, 28, 128, 512, 1, 1, (1, 1), (0, 0, 0, 0),
                                               0),
    "resnet50 1x1 64->256 @56x56": QConvShape(1, 56, 56, 64, 256, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "resnet50 1x1 512->128 @28x28": QConvShape(1, 28, 28, 512, 128, 1, 1, (1, 1), (0, 0, 0, 0),
                                               0),
    "resnet50 3x3 128->128 @28x28": QConvShape(1, 28, 28, 128, 128, 3, 3, (1, 1), (1, 1, 1, 1),
                                               0),
    "resnet50 1x1 256->1024 @14x14": QConvShape(1, 14, 14, 256, 1024, 1, 1, (1, 1),
                                                (0, 0, 0, 0), 0),
    "resnet50 3x3 256->256 @14x14": QConvShape(1, 14, 14, 256, 256, 3, 3, (1, 1), (1, 1, 1, 1),
                                               0),
    "resnet50 1x1 2048->512 @7x7": QConvShape(1, 7, 7, 2048, 512, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "resnet50 3x3 512->512 @7x7": QConvShape(1, 7, 7, 512, 512, 3, 3, (1, 1), (1, 1, 1, 1), 0),
    "resnet50 stem 7x7/2 3->64 @224": QConvShape(1, 224, 224, 3, 64, 7, 7, (2, 2),
                                                 (3, 3, 3, 3), 0),
    "resnet50 dense 2048->1000": QConvShape(1, 1, 1, 2048, 1000, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "bert dense 128x768 -> 3072": QConvShape(1, 1, 128, 768, 3072, 1, 1, (1, 1), (0, 0, 0, 0), 3),
}


def reference(s: QConvShape, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The convolution in int64 numpy, padding with the zero point."""
    pt, pl, pb, pr = s.padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (pt, pb), (pl, pr), (0, 0)),
                constant_values=s.zero_point)
    oh, ow = s.out_hw
    out = np.zeros((s.n, oh, ow, s.oc), np.int64)
    for i in range(s.kh):
        for j in range(s.kw):
            patch = xp[:, i:i + oh * s.stride[0]:s.stride[0], j:j + ow * s.stride[1]:s.stride[1]]
            out += patch @ w[:, i, j, :].astype(np.int64).T
    return out


def run(shape: QConvShape, vnni: bool, target, repeat: int, cpu_time: bool = False) -> float:
    func = schedule_kernel(qconv2d_func(shape), vnni)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=target)
    rng = np.random.default_rng(0)
    s = shape
    x = rng.integers(0, 256, (s.n, s.h, s.w, s.ic)).astype(np.uint8)
    w = rng.integers(-127, 128, (s.oc, s.kh, s.kw, s.ic)).astype(np.int8)
    oh, ow = s.out_hw
    args = [tvm.runtime.tensor(a) for a in (x, pack_weight(w), np.zeros(s.oc, np.int32),
                                            np.ones(s.oc, np.float32))]
    out = tvm.runtime.tensor(np.zeros((s.n, oh, ow, s.oc), np.float32))
    lib["main"](*args, out)
    assert np.array_equal(out.numpy(), reference(s, x, w).astype(np.float32))
    if cpu_time:
        func = lib["main"]
        start = time.process_time()
        for _ in range(repeat):
            func(*args, out)
        seconds = (time.process_time() - start) / repeat
    else:
        timer = lib.mod.time_evaluator("main", tvm.cpu(), number=repeat, repeat=3)
        seconds = min(timer(*args, out).results)
    return 2 * s.macs() / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread, timed by process CPU time")
    parser.add_argument("--vnni-only", action="store_true", help="skip the generic schedule")
    args = parser.parse_args()
    target = resolve_target(None).tvm_target()
    vnni = has_vnni(target)
    print(f"target {target}; VNNI: {vnni}")
    print("| kernel | GOP/s generic schedule | GOP/s VNNI schedule |")
    print("|---|---|---|")
    for name, shape in SHAPES.items():
        generic = (float("nan") if args.vnni_only
                   else run(shape, False, target, args.repeat, args.cpu_time))
        fast = run(shape, True, target, args.repeat, args.cpu_time) if vnni else float("nan")
        print(f"| {name} | {generic:.1f} | {fast:.1f} |")


if __name__ == "__main__":
    main()
