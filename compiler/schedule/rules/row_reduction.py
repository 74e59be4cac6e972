"""Row reductions on CPU: softmax, layer norm, RMS norm, mean / variance over the last axes.

These kernels are a chain of blocks over the same rows (the leading spatial axes):
reductions along each row (max, sum, sum of squares) and elementwise steps over the row
or per row (exp, subtract the mean, scale). dlight's CPU ``Reduction`` rule runs each
reduction as one scalar dependency chain (a ``max`` or ``+`` waiting on the previous
one) and leaves a row whose length the vector width does not divide unvectorised:
1-2 GFLOP/s, a [12, 197, 197] softmax in 2 ms where ONNX Runtime needs 0.2.

This rule keeps dlight's structure (rows in parallel, every block computed row by row so
the row stays in L1) and vectorises both kinds of block:

    parallel for row                      # fused leading spatial axes
      for ko, vectorize ki in lanes       # each reduction: ``lanes`` partial results
        part[ki] = max(part[ki], x[row, ko * lanes + ki])     (rfactor)
      for ki in 4, vectorize: part4[ki] = max(part[ki], part[4 + ki], ...)  (16 -> 4)
      for ki: out[row] = max(out[row], part4[ki])             (4 -> 1)
      for jo, vectorize ji in lanes       # each elementwise block
        ...
      for j in tail                       # the row's last n % lanes elements, scalar

The 16 -> 4 fold (16 partial results in a row that 16 divides) is there because the last
step is a chain of scalar steps, each waiting on the one before; with the NaN-keeping max
(mcc.build.nan) 16 of them cost a [12, 128, 128] softmax as much as its vector work
(155 -> 112 us with the fold, one thread).

Partial results use the widest of 16, 8 or 4 float32 lanes that divides the row; a row
none divides (ViT's 197 tokens) gets 16 lanes and a last chunk bounded by
``chunk * 16 + lane < n``. TVM's compute_at drops that predicate, so it is put back on
the finished schedule (``_bound_partial_chunks``). Elementwise blocks are split into a
vectorised body and a scalar tail (``loop_partition``). Producers read by a single block
are inlined into it, so ``x - max`` is not stored.
"""

from __future__ import annotations

from tvm import tirx
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr

from mcc.schedule.rules.base import CpuRule
from mcc.schedule.rules.bounds import add_guards
from mcc.targets.cpu_info import cpu_info

_REDUCE = int(tirx.IterVar.CommReduce)


class RowReduction(CpuRule):
    """Vectorised, row-parallel schedule for softmax / normalisation kernels."""

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        started = self._start(func, target)
        if started is None:
            return None
        sch, blocks = started
        if len(blocks) < 2 or all(b.is_injective() for b in blocks):
            return None
        if not blocks[-1].is_injective():
            return None
        rows = _leading_spatial(blocks)
        if not rows or not _same_rows(sch, blocks, rows):
            return None
        if not all(_reads_rows(sch.get(b.block_rv)) for b in blocks if not b.is_injective()):
            return None
        outputs = {sch.get(b).name_hint for b in sch.get_output_blocks("root")}
        for info in blocks[:-1]:  # x - max: computed where it is read, once
            block = info.block_rv
            if (info.is_injective() and sch.get(block).name_hint not in outputs
                    and len(sch.get_consumers(block)) == 1):
                sch.compute_inline(block)

        partials = {}  # rfactor block name -> (lanes, row length)
        folded = {}  # rfactor block name -> lanes of its folded partials (_fold_lanes)
        for block in _children(sch):
            if _is_reduction(sch, block):
                split = _split_into_lanes(sch, block, rows, _lanes(sch, block, target))
                if split is not None:
                    partial, lanes, length = split
                    partials[sch.get(partial).name_hint] = (lanes, length)
                    if length % lanes == 0 and _fold_lanes(sch, block, rows, lanes):
                        # TVM names the folded block as the first partial block
                        folded[sch.get(partial).name_hint] = lanes // _FOLD

        *producers, last = _children(sch)
        loops = sch.get_loops(last)
        row = sch.fuse(*loops[:rows]) if rows > 1 else loops[0]
        sch.parallel(row)
        for block in reversed(producers):
            sch.compute_at(block, row, preserve_unit_loops=True)
        for block in [*producers, last]:
            inner = sch.get_loops(block)[1:]
            if sch.get(block).name_hint in partials:
                # compute_at lays loops out in block-iterator order: the lane first
                lane, *rest = inner
                name = sch.get(block).name_hint
                if int(sch.get(lane).extent) not in (partials[name][0], folded.get(name)):
                    return None
                sch.reorder(*rest, lane)
                sch.vectorize(lane)
            elif inner and not _is_reduction(sch, block):
                fused = sch.fuse(*inner) if len(inner) > 1 else inner[0]
                _vectorize_with_tail(sch, fused, _lanes(sch, block, target))
        return _bound_partial_chunks(sch, partials)


def _children(sch) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(sch, block) -> bool:
    return any(int(iv.iter_type) == _REDUCE for iv in sch.get(block).iter_vars)


def _lanes(sch, block, target) -> int:
    """float32 (or the written dtype's) elements per SIMD register."""
    return cpu_info(target).lanes(str(sch.get(block).writes[0].source.dtype))


def _leading_spatial(blocks) -> int:
    """Number of row axes: the leading spatial axes every block has. 0 (no rule) when a
    reduction also runs over an axis before a spatial one (a column sum, pooling)."""
    rows = min(len(b.dom_kind()) - len(b.dom_kind().lstrip("S")) for b in blocks)
    for info in blocks:
        if not info.is_injective() and set(info.dom_kind()[rows:]) != {"R"}:
            return 0
    return rows


def _same_rows(sch, blocks, rows: int) -> bool:
    """Every block runs over the same (constant) rows."""
    found = None
    for info in blocks:
        extents = [sch.get(loop).extent for loop in sch.get_loops(info.block_rv)[:rows]]
        if not all(isinstance(e, tirx.IntImm) for e in extents):
            return False
        extents = [int(e) for e in extents]
        if found is not None and extents != found:
            return False
        found = extents
    return True


def _reads_rows(block) -> bool:
    """The reduction reads its inputs along their last axes (x[..., k]), so the partial
    results are contiguous vector loads. A matrix-vector product reads W[k, n] down a
    column: lanes along k would be gathers, slower than dlight's rules (left to them)."""
    reduced = [iv.var for iv in block.iter_vars if int(iv.iter_type) == _REDUCE]
    for region in block.reads:
        indices = [r.min for r in region.region]
        read = set().union(*(collect_vars_used_in_prim_expr(index) for index in indices))
        used = [v for v in reduced if any(v.same_as(x) for x in read)]
        if not used:
            continue
        tail = indices[len(indices) - len(reduced):]
        if len(tail) != len(reduced) or not all(i.same_as(v) for i, v in zip(tail, reduced)):
            return False
    return True


def _split_into_lanes(sch, block, rows: int, lanes: int):
    """(rfactor block, lanes, row length): ``block``'s reduction split into partial results,
    ``lanes`` of them (the widest of lanes, lanes / 2, lanes / 4 that divides the row, else
    ``lanes`` with a partial last chunk); None for a row shorter than two vectors."""
    reduce_loops = sch.get_loops(block)[rows:]
    if not reduce_loops:
        return None
    loop = sch.fuse(*reduce_loops) if len(reduce_loops) > 1 else reduce_loops[0]
    extent = sch.get(loop).extent
    if not isinstance(extent, tirx.IntImm):
        return None
    n = int(extent)
    widths = [w for w in (lanes, lanes // 2, lanes // 4) if w >= 4 and n % w == 0]
    width = widths[0] if widths else lanes  # else: the last chunk of the row is partial
    if n < 2 * width:
        return None
    _, lane = sch.split(loop, factors=[None, width])
    return sch.rfactor(lane, factor_axis=rows), width, n


_FOLD = 4  # lanes folded per step of the partial results' tree


def _fold_lanes(sch, block, rows: int, lanes: int):
    """The partial results folded once more, ``lanes`` -> ``lanes / _FOLD`` (a vector step):
    the final lanes -> 1 reduction is a chain of scalar steps, each waiting on the last,
    and with the NaN-keeping max (mcc.build.nan: compare, mask, blend) 16 of them per
    softmax row cost as much as the row's vector work. None where ``lanes`` is too few."""
    if lanes < 4 * _FOLD:
        return None
    loop = sch.get_loops(block)[rows]
    _, inner = sch.split(loop, factors=[None, lanes // _FOLD])
    return sch.rfactor(inner, factor_axis=rows)


def _bound_partial_chunks(sch, partials: dict):
    """``sch`` with the partial-result blocks of rows that ``lanes`` does not divide bounded
    again to the row: TVM's compute_at drops the ``chunk * lanes + lane < n`` predicate
    of such a split, and the last chunk would then read past the row."""
    uneven = {name: (lanes, n) for name, (lanes, n) in partials.items() if n % lanes}
    if not uneven:
        return sch

    def inside_row(realize) -> list:
        block = realize.block
        if block.name_hint not in uneven:
            return []
        lanes, n = uneven[block.name_hint]
        values, kinds = list(realize.iter_values), [int(iv.iter_type) for iv in block.iter_vars]
        (chunk,) = [v for v, kind in zip(values, kinds) if kind == _REDUCE]
        return [tirx.LT(chunk * lanes + values[0], tirx.const(n, values[0].ty.dtype))]

    return add_guards(sch, inside_row)


def _vectorize_with_tail(sch, loop, lanes: int) -> None:
    """Vectorise ``loop`` by ``lanes``; a remainder runs as a scalar loop after it."""
    extent = sch.get(loop).extent
    if not isinstance(extent, tirx.IntImm) or int(extent) < lanes:
        return
    n = int(extent)
    if n % lanes:
        loop, _ = sch.loop_partition(loop, factors=[n - n % lanes, None])
    _, vector = sch.split(loop, factors=[None, lanes])
    sch.vectorize(vector)
