"""Throughput of mcc's int8 kernel alone (compiler/int8_kernels.py), VNNI vs generic schedule.

    .venv/bin/python benchmarks/int8_kernel.py [--repeat 20]

Shapes from ResNet-50 and BERT-base; GOP/s counts a multiply-add as 2 operations.
Each result is checked against int64 numpy arithmetic before it is timed.
"""

from __future__ import annotations

import argparse

import numpy as np
import tvm

from mcc.int8_kernels import QConvShape, pack_weight, qconv2d_func
from mcc.int8_schedule import has_vnni, schedule_kernel
from mcc.targets import resolve_target

SHAPES = {
    "resnet50 3x3 64->64 @56x56": QConvShape(1, 56, 56, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1), 0),
    "resnet50 1x1 256->64 @56x56": QConvShape(1, 56, 56, 256, 64, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "resnet50 1x1 128->512 @28x28": QConvShape(1, 28, 28, 128, 512, 1, 1, (1, 1), (0, 0, 0, 0),
                                               0),
    "resnet50 3x3 512->512 @7x7": QConvShape(1, 7, 7, 512, 512, 3, 3, (1, 1), (1, 1, 1, 1), 0),
    "resnet50 stem 7x7/2 3->64 @224": QConvShape(1, 224, 224, 3, 64, 7, 7, (2, 2),
                                                 (3, 3, 3, 3), 0),
    "resnet50 dense 2048->1000": QConvShape(1, 1, 1, 2048, 1000, 1, 1, (1, 1), (0, 0, 0, 0), 0),
    "bert dense 128x768 -> 3072": QConvShape(1, 1, 128, 768, 3072, 1, 1, (1, 1), (0, 0, 0, 0), 3),
}


def run(shape: QConvShape, vnni: bool, target, repeat: int) -> float:
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
    if s.kh == 1 and s.stride == (1, 1):  # exact check (1x1: a matrix product)
        ref = x.reshape(-1, s.ic).astype(np.int64) @ w.reshape(s.oc, -1).T.astype(np.int64)
        assert np.array_equal(out.numpy().reshape(ref.shape), ref.astype(np.float32))
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=repeat, repeat=3)
    seconds = min(timer(*args, out).results)
    return 2 * s.macs() / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    target = resolve_target(None).tvm_target()
    vnni = has_vnni(target)
    print(f"target {target}; VNNI: {vnni}")
    print("| kernel | GOP/s generic schedule | GOP/s VNNI schedule |")
    print("|---|---|---|")
    for name, shape in SHAPES.items():
        generic = run(shape, False, target, args.repeat)
        fast = run(shape, True, target, args.repeat) if vnni else float("nan")
        print(f"| {name} | {generic:.1f} | {fast:.1f} |")


if __name__ == "__main__":
    main()
