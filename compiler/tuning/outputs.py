"""Check that tuned schedules compute what the default schedule computes.

MetaSchedule only times candidates; it never looks at their outputs, and some schedules it
builds are wrong. Tuning ResNet-50 with Winograd, the three fastest records of the output
transform of the 14x14 maps (whose 4x4 tiles overhang the map) gave errors of 30 where the
outputs are about 50; the network then failed mcc compile's check against ONNX Runtime.
So before the recheck (mcc.tuning.recheck) times a task's best records, each is run on the
same random inputs as the task's default-rule schedule and must agree with it.
"""

from __future__ import annotations

import numpy as np

RTOL = 1e-3  # of the largest output magnitude: float reductions may be reordered


def disagreeing(candidates, reference, target, seed: int = 0) -> list[int]:
    """Indices of the schedules in ``candidates`` (s_tir.Schedule) whose outputs differ from
    ``reference``'s on the same random inputs, or that fail to build or run; each is built
    here for ``target`` (a CPU target this machine runs). None are refused when the
    reference itself cannot run here: there is nothing to check against."""
    try:
        expected = _run(reference, target, seed)
    except Exception:  # noqa: BLE001 - the recheck then times them as before
        return []
    wrong = []
    for i, candidate in enumerate(candidates):
        try:
            got = _run(candidate, target, seed)
        except Exception:  # noqa: BLE001 - a candidate that cannot run here is not kept
            wrong.append(i)
            continue
        if not all(_close(g, e) for g, e in zip(got, expected)):
            wrong.append(i)
    return wrong


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
