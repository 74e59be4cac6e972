"""Lower ``relax.dynamic_strided_slice`` (Slice with run-time starts/ends) before FoldConstant.

TVM's ``FoldConstant`` tries each op's legalization to see whether it folds. The
one for ``dynamic_strided_slice`` emits a shape function, ``tensor_to_shape`` and a
``match_cast`` into the builder while doing so, so those bindings leak into the
function even though the shape-function kernel is never added to the module:
``FuseOps`` then fails on an undefined ``shape_func``. Legalizing these calls
first, with a builder that owns the module, avoids it. Other ops are untouched.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax import PyExprMutator, expr_functor

_OP = "relax.dynamic_strided_slice"


def legalize_dynamic_slice(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace every ``dynamic_strided_slice`` call by its TIR lowering."""
    return LegalizeDynamicSlice()(mod)


@expr_functor.mutator
class _Lower(PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == _OP:
            legalize = tvm.ir.Op.get(_OP).get_attr("FLegalize")
            return legalize(self.builder_, call)
        return call


@tvm.transform.module_pass(opt_level=0, name="mcc.LegalizeDynamicSlice")
class LegalizeDynamicSlice:
    """Module pass form of :func:`legalize_dynamic_slice`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        if not _uses_op(mod):
            return mod
        lower = _Lower(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                lower.builder_.update_func(gv, lower.visit_expr(func))
        return lower.builder_.get()


def _uses_op(mod: tvm.IRModule) -> bool:
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
                expr.op.name == _OP:
            found.append(expr)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return bool(found)
