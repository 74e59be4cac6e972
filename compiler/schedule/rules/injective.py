"""Elementwise, broadcast, padding and layout-transform kernels: parallel and vectorised.

Every block of an all-spatial PrimFunc gets its innermost axis vectorised in
SIMD-width chunks (where it divides evenly) and all loops outside fused into
one loop run across the cores. Without this such kernels run as serial scalar
loops.
"""

from __future__ import annotations

from tvm import DataType, s_tir, tirx
from tvm.s_tir.dlight.base.common_schedules import try_inline

from mcc.schedule.rules.base import CpuRule
from mcc.targets.cpu_info import cpu_info


class Injective(CpuRule):
    """All blocks spatial (no reduction): fuse, vectorise the tail, parallelise the rest."""

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        started = self._start(func, target)
        if started is None:
            return None
        sch, blocks = started
        if any(b.is_reduction() or not b.is_injective() for b in blocks):
            return None
        # a fused elementwise chain (an int8 quantize: multiply, round, add, clip, cast) is
        # one loop over the data, not one pass and one temporary per op
        blocks = try_inline(sch, blocks)
        info = cpu_info(target)
        for block in blocks:
            schedule_spatial(sch, block.block_rv, info)
        return sch


def schedule_spatial(sch: s_tir.Schedule, block, info) -> None:
    """Vectorise the innermost axis in SIMD-wide chunks, run everything outside it in parallel.

    Only the innermost axis is split (never the fused index), so each vector
    lane's address is ``base + lane``: a plain vector load, not a gather with a
    division per lane.
    """
    loops = sch.get_loops(block)
    if not loops:
        return
    lanes = info.lanes(_compute_dtype(sch.get(block)))
    extents = [_const_extent(sch, loop) for loop in loops]
    if any(e is None for e in extents):  # symbolic shape: parallelise the outermost loop only
        sch.parallel(loops[0])
        return
    total = 1
    for e in extents:
        total *= e
    outer = loops[:-1]
    width = _vector_width(extents[-1], lanes)
    if width and total >= 2 * width:
        if extents[-1] > width:
            rest, vec = sch.split(loops[-1], [None, width])
            outer = [*outer, rest]
        else:
            vec = loops[-1]
        sch.vectorize(vec)
    else:
        outer = loops
    if outer and total >= 64:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if _const_extent(sch, fused) >= 2:
            sch.parallel(fused)


def _vector_width(extent: int, lanes: int) -> int:
    """SIMD lanes for an innermost axis of ``extent``: all of them where they divide it, else
    the largest power of two that does, down to 4 (24 or 12 channels: 8 or 4). Padding a
    24-channel NHWC map before a stride-2 conv ran as a scalar loop over the fused index,
    one division and a branch per element: longer than the conv (208x208x24: 2.5 ms of
    5.4)."""
    if extent % lanes == 0:
        return lanes
    width = lanes
    while width > 4 and extent % width:
        width //= 2
    return width if extent % width == 0 else 0


def _compute_dtype(block) -> str:
    """The type the block computes in: its widest float operand, else what it writes. An
    int8 quantize reads float32 and computes in it, so it gets float32's lanes (16 on
    AVX-512), not int8's 64 (a loop of 24 or 32 channels was left scalar, and 64 float
    lanes were refused as too wide)."""
    written = [str(r.source.dtype) for r in block.writes] or ["float32"]
    floats = [d for d in (str(r.source.dtype) for r in [*block.reads, *block.writes])
              if d.startswith(("float", "bfloat"))]
    return max(floats, key=lambda dtype: DataType(dtype).bits) if floats else written[0]


def _const_extent(sch, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


class ParallelFallback(CpuRule):
    """Last resort for any kernel no other rule took: run its outer spatial loops on all cores.

    Covers strided pooling in NCHW and other reductions whose innermost axis is
    not contiguous; each block keeps its loop order but its leading spatial
    loops are fused into one parallel loop (and all-spatial blocks are also
    vectorised), so nothing is left as a serial naive loop nest.
    """

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        started = self._start(func, target)
        if started is None:
            return None
        sch, blocks = started
        info = cpu_info(target)
        for block in blocks:
            if block.is_injective():
                schedule_spatial(sch, block.block_rv, info)
                continue
            kinds = block.dom_kind()
            lead = len(kinds) - len(kinds.lstrip("S"))
            loops = sch.get_loops(block.block_rv)[:lead]
            if not loops or any(_const_extent(sch, loop) is None for loop in loops):
                continue
            fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
            if _const_extent(sch, fused) >= 2:
                sch.parallel(fused)
        return sch
