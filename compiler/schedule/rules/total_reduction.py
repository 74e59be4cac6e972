"""Reductions of a whole tensor to one value: min / max / sum over every axis.

Dynamic quantization (ONNX DynamicQuantizeLinear, quantized LSTMs) takes the min and max
of each activation tensor at run time to find its scale. No other rule takes such a
kernel (nothing to parallelise, no rows), and ParallelFallback leaves it one scalar
dependency chain: 0.6 GFLOP/s, 0.3 ms for a 200k-element feature map in a dynamically
quantized OCR model, four of them per conv.

This rule splits the flattened reduction into ``lanes`` partial results, each a vector
lane, in ``chains`` independent vector accumulators so the adds / maxes do not wait on
each other's latency (rfactor):

    for ko:                                  # n / (chains * lanes)
      for c in chains (unrolled), vectorize l in lanes:
        part[c, l] = max(part[c, l], x[(ko * chains + c) * lanes + l])
    out = max over part                      # chains * lanes -> 1

Elementwise producers fused before it (the NaN-keeping max of ONNX ReduceMax) are
inlined into the partial results; scalar epilogues fused after it (``maximum(0, max(x))``,
the scale) stay as they are. A length that no width of at least 4 lanes divides is left
to other rules.
"""

from __future__ import annotations

import tvm
from tvm import tirx

from mcc.schedule.rules.base import CpuRule
from mcc.targets.cpu_info import cpu_info

CHAINS = 4  # independent vector accumulators: covers a 4-cycle add / max latency


class TotalReduction(CpuRule):
    """Vectorised partial results for a reduction whose output is a single element."""

    def apply(self, func: tirx.PrimFunc, target, tunable: bool):
        started = self._start(func, target)
        if started is None:
            return None
        sch, blocks = started
        reductions = [b for b in blocks if not b.is_injective()]
        if len(reductions) != 1:
            return None
        first = reductions[0]
        block = first.block_rv
        for producer in blocks[:blocks.index(first)]:  # NaN-keeping max's isnan steps
            try:
                sch.compute_inline(producer.block_rv)
            except tvm.error.TVMError:  # noqa: PERF203
                return None
        iters = sch.get(block).iter_vars
        extents = [iv.dom.extent for iv in iters]
        if not all(isinstance(e, tirx.IntImm) for e in extents):
            return None
        spatial = [int(e) for iv, e in zip(iters, extents)
                   if iv.iter_type == tirx.IterVar.DataPar]
        if any(e != 1 for e in spatial) or len(sch.get_loops(block)) != len(iters):
            return None
        kinds = first.dom_kind()
        lead = len(kinds) - len(kinds.lstrip("S"))
        if "S" in kinds[lead:]:
            return None
        reduce_loops = sch.get_loops(block)[lead:]
        n = 1
        for e in extents[lead:]:
            n *= int(e)
        dtype = str(sch.get(block).writes[0].source.dtype)
        lanes = _lanes(n, cpu_info(target).lanes(dtype))
        if lanes is None:
            return None
        chains = CHAINS if n % (CHAINS * lanes) == 0 and n >= 4 * CHAINS * lanes else 1
        fused = sch.fuse(*reduce_loops) if len(reduce_loops) > 1 else reduce_loops[0]
        _, inner = sch.split(fused, [None, chains * lanes])
        partial = sch.rfactor(inner, factor_axis=0)
        ploops = sch.get_loops(partial)
        ko, pinner = ploops[-2], ploops[-1]
        chain, lane = sch.split(pinner, [chains, lanes])
        sch.vectorize(lane)
        if chains > 1:
            sch.unroll(chain)
        init = sch.decompose_reduction(partial, ko)
        init_loops = sch.get_loops(init)
        sch.vectorize(sch.fuse(*init_loops[-1:]))
        return sch


def _lanes(n: int, widest: int) -> int | None:
    """The widest lane count (at most the target's vector) that divides ``n``."""
    for lanes in (64, 32, 16, 8, 4):
        if lanes <= max(widest, 4) and n % lanes == 0:
            return lanes
    return None
