"""Run one ``PyExprMutator`` over every Relax function of a module.

The mutator's own block builder collects the rewritten functions, so the TIR functions it
emits (``call_te``) land in the returned module, and functions that call each other (the
recursive ones mcc emits for ONNX ``Loop``) are all rewritten.
"""

from __future__ import annotations

import tvm
from tvm import relax


def rewrite_functions(rewriter, mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each Relax function replaced by ``rewriter.visit_expr`` of it."""
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get()
