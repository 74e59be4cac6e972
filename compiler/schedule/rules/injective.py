"""Elementwise, broadcast, padding and layout-transform kernels: parallel and vectorised.

Every block of an all-spatial PrimFunc gets its innermost axis vectorised in
SIMD-width chunks (where it divides evenly) and all loops outside fused into
one loop run across the cores. Without this such kernels run as serial scalar
loops.
"""

from __future__ import annotations

import tvm_ffi
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
    interleave = _interleave_modulus(sch.get(block), extents[-1], lanes)
    cuts = _concat_cuts(sch.get(block), extents[-1])
    width = _vector_width(extents[-1], lanes)
    if interleave and total >= 64:
        _, part = sch.split(loops[-1], [None, interleave])
        sch.unroll(part)
    elif len(loops) > 1 and total >= 64 and (
            cuts or (width < MIN_PIECE_WIDTH and extents[-1] > lanes)):
        # the innermost axis as a loop of its own, in pieces: one per part of a
        # concatenation (each a plain copy, its branch resolved), each as whole vectors
        # and a scalar tail. Fused into the parallel index, every element paid a division
        # and a modulo per axis to find its coordinates and nothing was vectorised (a
        # 28x28x136 split into four 34-channel parts: 110 -> 10 us; a 28x28x34 ReLU
        # 46 -> 2.7 us)
        _parallel(sch, outer, total)
        _vectorize_pieces(sch, loops[-1], [0, *cuts, extents[-1]], lanes)
        return
    elif width and total >= 2 * width:
        if extents[-1] > width:
            rest, vec = sch.split(loops[-1], [None, width])
            outer = [*outer, rest]
        else:
            vec = loops[-1]
        sch.vectorize(vec)
    elif len(loops) > 1 and extents[-1] >= MIN_INNER_LOOP:
        pass  # a plain inner loop, for the same reason
    else:
        outer = loops
    _parallel(sch, outer, total)


def _vectorize_pieces(sch, loop, bounds: list[int], lanes: int) -> None:
    """Partition ``loop`` at ``bounds``; the first piece as whole vectors (vectorised) and a
    scalar tail, the others scalar (TVM splits only loops that start at 0)."""
    if len(bounds) > 2:
        loop = sch.loop_partition(loop, [*(b - a for a, b in zip(bounds, bounds[1:-1])),
                                         None])[0]
    size = bounds[1]
    whole = size // lanes * lanes
    if whole and whole < size:
        loop = sch.loop_partition(loop, [whole, None])[0]
    if whole:
        vec = sch.split(loop, [None, lanes])[1] if whole > lanes else loop
        sch.vectorize(vec)


def _concat_cuts(block, extent: int) -> list[int]:
    """Where a concatenation along the innermost axis changes part: the constants ``b``
    of its ``b <= c`` / ``c < b`` branch conditions on that axis, sorted."""
    var = block.iter_vars[-1].var
    cuts = set()

    def note(node):
        low, high = node.a, node.b
        if isinstance(low, tirx.IntImm) and high.same_as(var):
            cuts.add(int(low.value))
        elif low.same_as(var) and isinstance(high, tirx.IntImm):
            cuts.add(int(high.value))

    tvm_ffi.structural_walk(block.body, ((tirx.LE, tirx.LT), note), order="post")
    return sorted(c for c in cuts if 0 < c < extent)


def _parallel(sch, outer, total: int) -> None:
    if outer and total >= 64:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if _const_extent(sch, fused) >= 2:
            sch.parallel(fused)


def _interleave_modulus(block, extent: int, lanes: int) -> int | None:
    """``m`` where the block indexes its innermost axis ``c`` by ``c % m`` and ``c // m``
    with ``m`` no multiple of the vector width (a channel shuffle's interleave,
    ``out[c] = in[(c % g) * k + c // g]``); else None.

    Such an axis neither vectorises (its lanes read scattered addresses) nor should be
    fused into the parallel index (each element then paid a division and modulo per axis
    to find its coordinates: 3.7 ms for ShuffleNet's 56x56x112 shuffle). Split by ``m``
    with the ``m`` part unrolled, both are plain loop variables and the per-part choice
    of a concatenation in front resolves at compile time."""
    var = block.iter_vars[-1].var
    moduli = set()

    def note(node):
        if node.a.same_as(var) and isinstance(node.b, tirx.IntImm):
            moduli.add(int(node.b.value))

    tvm_ffi.structural_walk(block.body, ((tirx.FloorMod, tirx.FloorDiv), note), order="post")
    fits = [m for m in moduli if 1 < m <= MAX_UNROLL and extent % m == 0 and m % lanes]
    return min(fits) if fits else None


MAX_UNROLL = 16  # the most copies of the body an unrolled modulus part may make
MIN_INNER_LOOP = 2  # a 1-long axis is no loop to keep
MIN_PIECE_WIDTH = 8  # narrower divisors of a long axis: 16-lane pieces + a tail instead


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
