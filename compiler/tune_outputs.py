"""Check that tuned schedules compute what the default schedule computes.

MetaSchedule only times candidates; it never looks at their outputs, and some schedules it
builds are wrong. Tuning ResNet-50 with Winograd, the three fastest records of the output
transform of the 14x14 maps (whose 4x4 tiles overhang the map) gave errors of 30 where the
outputs are about 50; the network then failed mcc compile's check against ONNX Runtime.
So before the recheck (mcc.tune_recheck) times a task's best records, each is run on the
same random inputs as the task's default-rule schedule and must agree with it.
"""

from __future__ import annotations

import numpy as np

RTOL = 1e-3  # of the largest output magnitude: float reductions may be reordered


def outputs_agree(candidate, reference, target, seed: int = 0) -> bool:
    """Whether schedule ``candidate`` (an s_tir.Schedule) gives ``reference``'s outputs on
    random inputs, built here for ``target`` (a CPU target this machine runs)."""
    got, expected = (_run(sch, target, seed) for sch in (candidate, reference))
    return all(_close(g, e) for g, e in zip(got, expected))


def _close(got: np.ndarray, expected: np.ndarray) -> bool:
    if got.shape != expected.shape:
        return False
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    return bool(np.all(np.abs(got - expected) <= RTOL * max(scale, 1.0)))


def _run(sch, target, seed: int) -> list[np.ndarray]:
    """Every argument after one run (inputs unchanged, outputs written), from seeded data."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    rng = np.random.default_rng(seed)
    args = []
    # built with its layout-rewrite blocks, so it takes the original argument layouts
    for info in ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=False):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        data = (rng.standard_normal(shape) if "float" in dtype
                else rng.integers(-4, 4, shape)).astype(dtype)
        args.append(tvm.runtime.tensor(data))
    tvm.compile(sch.mod, target)["main"](*args)
    return [a.numpy() for a in args]
