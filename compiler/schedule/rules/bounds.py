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

from mcc.schedule.rules.base import loops


def restore_bounds(sch: s_tir.Schedule) -> s_tir.Schedule:
    """``sch``, or a new schedule of its function with the dropped guards put back."""
    analyzer = tvm.sym.Analyzer()
    for loop in loops(sch.mod["main"].body):
        analyzer.bind(loop.loop_var, tvm.ir.Range.from_min_extent(loop.min, loop.extent))

    def outside_domain(realize) -> list:
        conditions = []
        with analyzer.constraint_scope(realize.predicate):  # a guard still in place counts
            for iv, value in zip(realize.block.iter_vars, realize.iter_values):
                low, high = iv.dom.min, iv.dom.min + iv.dom.extent
                if not analyzer.can_prove(value < high):
                    conditions.append(tirx.LT(value, high))
                if not analyzer.can_prove(value >= low):
                    conditions.append(tirx.GE(value, low))
        return conditions

    return add_guards(sch, outside_domain)


def add_guards(sch: s_tir.Schedule, conditions_of) -> s_tir.Schedule:
    """``sch``, or a new schedule of its function where each block realize also requires
    ``conditions_of(realize)`` (a list of conditions, empty for none). Done on the finished
    schedule: a predicate makes a binding non-affine for further schedule primitives."""
    changed = []

    def guard(realize):
        conditions = conditions_of(realize)
        if not conditions:
            return realize
        predicate = realize.predicate
        for condition in conditions:
            predicate = condition if _is_true(predicate) else tirx.And(predicate, condition)
        changed.append(realize.block.name_hint)
        return s_tir.SBlockRealize(list(realize.iter_values), predicate, realize.block)

    guarded = tvm_ffi.structural_map(sch.mod["main"], [(s_tir.SBlockRealize, guard)])
    return s_tir.Schedule(guarded) if changed else sch


def _is_true(predicate) -> bool:
    return isinstance(predicate, tirx.IntImm) and int(predicate) == 1
