"""Run kernels too small to split on the calling thread.

A parallel loop wakes TVM's thread pool and waits at a barrier when it ends. For a
kernel that does a few thousand operations (a slice of one time step, the 1x128 by
128x384 matmul of a GRU cell, a bias add) that wake-up and barrier cost more than the
work, and on a machine where another process holds a core the barrier waits for a
scheduler slice: a 2-layer GRU keyword spotter (98 unrolled steps, ~400 parallel
kernels per call) took 4.1 ms with two threads and 0.83 ms with its small kernels
serial (ONNX Runtime: 0.7 ms). The schedules themselves (records, rules) keep their
parallel loops; this rewrite runs after scheduling, so tuning records still match.

Work is counted as loop iterations around each store (a call, e.g. a tensorized
intrinsic, counts as ``CALL_WORK``); a loop whose extent is not a constant counts as
unbounded, so kernels over symbolic shapes keep their parallel loops.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

from mcc.schedule.rules.base import loops

# Below this many innermost iterations a kernel runs serially: a few to a few tens of
# microseconds of vectorized work, about what a thread-pool wake-up and barrier cost.
SERIAL_WORK = 1 << 17
CALL_WORK = 64
_UNBOUNDED = 1 << 62


def kernel_work(stmt) -> int:
    """Innermost iterations of ``stmt`` (saturating at an unbounded count)."""
    if isinstance(stmt, tirx.For):
        extent = stmt.extent
        if not isinstance(extent, tirx.IntImm):
            return _UNBOUNDED
        return min(_UNBOUNDED, int(extent.value) * kernel_work(stmt.body))
    if isinstance(stmt, tirx.While):
        return _UNBOUNDED
    if isinstance(stmt, tirx.BufferStore):
        return 1
    if isinstance(stmt, tirx.Evaluate):
        return CALL_WORK
    if isinstance(stmt, tirx.SeqStmt):
        return min(_UNBOUNDED, sum(kernel_work(s) for s in stmt.seq))
    if isinstance(stmt, tirx.IfThenElse):
        other = kernel_work(stmt.else_case) if stmt.else_case is not None else 0
        return max(kernel_work(stmt.then_case), other)
    total = 0
    for attr in ("init", "block", "body"):  # blocks, realizes, attributes, allocations
        child = getattr(stmt, attr, None)
        if isinstance(child, tirx.Stmt):
            total += kernel_work(child)
    return min(_UNBOUNDED, total)


def _serial(loop: tirx.For) -> tirx.For:
    if loop.kind != tirx.ForKind.PARALLEL:
        return loop
    return tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.SERIAL, loop.body,
                    loop.thread_binding, loop.annotations)


def has_parallel_loop(func: tirx.PrimFunc) -> bool:
    return any(loop.kind == tirx.ForKind.PARALLEL for loop in loops(func.body))


def serialize_small_kernels(mod: tvm.IRModule, threshold: int = SERIAL_WORK):
    """``mod`` with the parallel loops of every kernel under ``threshold`` work made
    serial, and the names of the kernels changed."""
    changed = []
    for gv, func in list(mod.functions_items()):
        if not isinstance(func, tirx.PrimFunc) or kernel_work(func.body) >= threshold:
            continue
        body = tvm_ffi.structural_map(func.body, [(tirx.For, _serial)], order="post")
        if not body.same_as(func.body):
            mod[gv] = func.with_body(body)
            changed.append(gv.name_hint)
    return mod, changed
