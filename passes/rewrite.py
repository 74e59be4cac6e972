"""Shared drivers for mcc's graph rewrites.

:func:`rewrite_functions` runs one ``PyExprMutator`` over every Relax function of a
module: the mutator's own block builder collects the rewritten functions, so the TIR
functions it emits (``call_te``) land in the returned module, and functions that call each
other (the recursive ones mcc emits for ONNX ``Loop``) are all rewritten.

:func:`rewrite_matching_calls` is the pattern form the one-op rewrites use (conv1d as
conv2d, padded channels, grouped and transposed convs).
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


def rewrite_matching_calls(pattern, rewrite, func):
    """``func`` with every call matching ``pattern`` replaced by ``rewrite(call)`` (which
    returns the call itself to leave it). Fused ("Primitive") functions are left alone, and
    ``rewrite`` only ever sees calls: ``rewrite_call`` can hand over a binding's var that
    the pattern saw through."""
    from tvm.relax.dpl import rewrite_call

    if func.attrs is not None and "Primitive" in func.attrs:
        return func
    return rewrite_call(pattern,
                        lambda expr, _: rewrite(expr) if isinstance(expr, relax.Call) else expr,
                        func)
