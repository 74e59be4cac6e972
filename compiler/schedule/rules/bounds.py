"""Put back the bounds that TVM's compute_at / reverse_compute_at drop.

A split whose factor does not divide the loop (13 output pixels in tiles of 8 rows)
guards its block with ``tile * 8 + row < 13``. TVM 0.27's compute_at and
reverse_compute_at regenerate the loops of the blocks they move (the accumulators'
write-back, the zero-init) from the iteration domain and can drop such guards: ViT's
197-token attention scores, whose write-back also slices padded columns, then wrote past
the output and corrupted the heap.
(rfactor's partial results are the other case: their domain itself is rounded up, so
``row_reduction`` bounds them with the row length it knows.)

``restore_bounds`` runs on a finished schedule: every block whose iterator bindings can
leave the iterator's domain, given the ranges of the loops around it, gets the predicate
``min <= binding < min + extent`` (TensorIR's own meaning of a block instance outside its
domain: none). Kernels without such splits come out unchanged.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx


def restore_bounds(sch: s_tir.Schedule) -> s_tir.Schedule:
    """``sch``, or a new schedule of its function with the dropped guards put back."""
    func = sch.mod["main"]
    analyzer = tvm.sym.Analyzer()
    for loop in _loops(func.body):
        analyzer.bind(loop.loop_var, tvm.ir.Range.from_min_extent(loop.min, loop.extent))
    changed = []

    def guard(realize):
        conditions = []
        with analyzer.constraint_scope(realize.predicate):  # a guard still in place counts
            for iv, value in zip(realize.block.iter_vars, realize.iter_values):
                low, high = iv.dom.min, iv.dom.min + iv.dom.extent
                if not analyzer.can_prove(value < high):
                    conditions.append(tirx.LT(value, high))
                if not analyzer.can_prove(value >= low):
                    conditions.append(tirx.GE(value, low))
        if not conditions:
            return realize
        predicate = realize.predicate
        for condition in conditions:
            predicate = condition if _is_true(predicate) else tirx.And(predicate, condition)
        changed.append(realize.block.name_hint)
        return s_tir.SBlockRealize(list(realize.iter_values), predicate, realize.block)

    guarded = tvm_ffi.structural_map(func, [(s_tir.SBlockRealize, guard)])
    return s_tir.Schedule(guarded) if changed else sch


def _loops(body) -> list:
    found = []
    tvm_ffi.structural_walk(body, (tirx.For, found.append), order="post")
    return found


def _is_true(predicate) -> bool:
    return isinstance(predicate, tirx.IntImm) and int(predicate) == 1
