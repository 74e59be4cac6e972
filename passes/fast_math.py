"""TVM's ``FastMathTransform``, safe on modules where Relax functions call each other.

TVM 0.27's pass reads ``call.op.name`` on every call, so it crashes on a call to
another Relax function (``GlobalVar`` has no ``name``): the recursive functions
mcc emits for ONNX ``Loop``. Same rewrites (exp, erf, tanh, softmax as
vectorisable polynomials), only applied to calls of Relax operators.
"""

from __future__ import annotations

import tvm
from tvm import topi
from tvm.relax import PyExprMutator, expr_functor

from mcc.passes.rewrite import rewrite_functions

_FAST = {
    "relax.exp": lambda bb, call: bb.call_te(topi.fast_exp, call.args[0]),
    "relax.erf": lambda bb, call: bb.call_te(topi.fast_erf, call.args[0]),
    "relax.tanh": lambda bb, call: bb.call_te(topi.fast_tanh, call.args[0]),
    "relax.nn.softmax": lambda bb, call: bb.call_te(topi.nn.fast_softmax, call.args[0],
                                                    call.attrs.axis),
}


def fast_math(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace exp / erf / tanh / softmax by TOPI's fast approximations."""
    return FastMath()(mod)


@expr_functor.mutator
class _FastMathRewriter(PyExprMutator):
    def visit_call_(self, call):
        if isinstance(call.op, tvm.ir.Op) and call.op.name in _FAST:
            return _FAST[call.op.name](self.builder_, call)
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="mcc.FastMath")
class FastMath:
    """Module pass form of :func:`fast_math`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return rewrite_functions(_FastMathRewriter(mod), mod)
