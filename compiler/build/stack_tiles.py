"""Register tiles (``local`` buffers) on the stack, not the workspace pool, on CPU targets.

A schedule's ``local`` buffer is the tile of accumulators it means LLVM to keep in
registers (``set_scope`` / ``cache_write`` to ``local``); it is allocated inside the
parallel loop, once per tile. TVM's LowerTVMBuiltin puts a CPU allocation of 1 KiB or
more (``kMaxStackAlloca``) in the workspace pool instead of the stack: a
``TVMBackendAllocWorkspace`` / ``FreeWorkspace`` call pair per tile, which also keeps
the tile in memory across the calls. The bf16 conv tile (14 pixels x 32 channels of
fp32: 1792 bytes) paid that per 224 ``vdpbf16ps`` in a 1x1 conv with 16 input channels:
MobileNetV2's 112x112 expand conv 315 -> 198 us on one Zen 5 thread, its 56x56 one
148 -> 102, the stem 220 -> 185, a 14x14 256 -> 1024 1x1 472 -> 442 (same bits).

So each ``local`` allocation of a constant size up to ``MAX_BYTES`` gets
``disable_lower_builtin``, which LowerTVMBuiltin (run after this, in the host
finalization) honours by leaving it a stack ``alloca``. Runs at the end of the TIR
pipeline (mcc.build.nan), where allocations are flat.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

MAX_BYTES = 8192  # far below any thread's stack; a register tile is a few KiB at most
ANNOTATION = "disable_lower_builtin"  # tirx::attr kDisableLowerTVMBuiltin


def _constant_bytes(buffer) -> int | None:
    size = 1
    for dim in buffer.shape:
        if not isinstance(dim, tirx.IntImm):
            return None
        size *= int(dim.value)
    dtype = buffer.dtype
    return size * dtype.bits * dtype.lanes // 8


def tiles_on_stack(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, int]:
    """``func`` with its small ``local`` allocations kept on the stack, and how many."""
    count = 0

    def on_stack(node):
        nonlocal count
        buffer = node.buffer
        size = _constant_bytes(buffer)
        if buffer.scope() != "local" or size is None or size > MAX_BYTES:
            return node
        count += 1
        annotations = dict(node.annotations)
        annotations[ANNOTATION] = tirx.IntImm("bool", 1)
        return tirx.AllocBuffer(buffer, annotations)

    body = tvm_ffi.structural_map(func.body, [(tirx.AllocBuffer, on_stack)])
    return (func.with_body(body), count) if count else (func, 0)


def _cpu(func) -> bool:
    from mcc.targets.kinds import kind_of

    target = func.attrs.get("target") if func.attrs is not None else None
    return target is not None and kind_of(target).llvm_kernels


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="mcc.TilesOnStack")
def TilesOnStack(func, _mod, _ctx):  # noqa: N802 (a pass, named like TVM's)
    return tiles_on_stack(func)[0] if _cpu(func) else func
