"""Count Relax operator calls: the structural check behind pass tests and reports."""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax


def count_ops(mod: tvm.IRModule) -> Counter:
    """Op name -> number of calls, over every Relax function in ``mod``."""
    counts: Counter = Counter()

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name] += 1

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts
