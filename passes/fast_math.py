"""TVM's ``FastMathTransform``, safe on modules where Relax functions call each other.

TVM 0.27's pass reads ``call.op.name`` on every call, so it crashes on a call to
another Relax function (``GlobalVar`` has no ``name``): the recursive functions
mcc emits for ONNX ``Loop``. Same rewrites (exp, erf, tanh, softmax as
vectorisable polynomials), only applied to calls of Relax operators.

Sigmoid (and SiLU, ``x * sigmoid(x)``) is added: TVM lowers ``tir.sigmoid`` to
``1 / (1 + expf(-x))`` with a scalar libm ``expf`` per element even in a vectorised loop,
so a SiLU epilogue cost more than its conv (a 1x1 conv 52x52, 96 -> 48 channels: 0.28 ms
without it, 0.66 ms with it, one thread). ``1 / (1 + fast_exp(-x))`` vectorises; it keeps
sigmoid's limits (fast_exp clamps to +-88.38, so +-inf give 1 and 0) and NaN.
"""

from __future__ import annotations

import tvm
from tvm import te, topi
from tvm.relax import PyExprMutator, expr_functor

from mcc.passes.rewrite import rewrite_functions


def fast_sigmoid(x: te.Tensor) -> te.Tensor:
    """``1 / (1 + fast_exp(-x))``: float32 only (fast_exp is exact exp for other types)."""
    e = topi.fast_exp(topi.negative(x))
    one = tvm.tirx.const(1.0, x.dtype)
    return te.compute(x.shape, lambda *i: one / (one + e(*i)), name="fast_sigmoid",
                      tag=topi.tag.ELEMWISE)


def fast_silu(x: te.Tensor) -> te.Tensor:
    s = fast_sigmoid(x)
    return te.compute(x.shape, lambda *i: x(*i) * s(*i), name="fast_silu",
                      tag=topi.tag.ELEMWISE)


def _float32(call) -> bool:
    return str(getattr(call.args[0].ty, "dtype", "")) == "float32"


_FAST = {
    "relax.exp": lambda bb, call: bb.call_te(topi.fast_exp, call.args[0]),
    "relax.erf": lambda bb, call: bb.call_te(topi.fast_erf, call.args[0]),
    "relax.tanh": lambda bb, call: bb.call_te(topi.fast_tanh, call.args[0]),
    "relax.nn.softmax": lambda bb, call: bb.call_te(topi.nn.fast_softmax, call.args[0],
                                                    call.attrs.axis),
    "relax.sigmoid": lambda bb, call: bb.call_te(fast_sigmoid, call.args[0]),
    "relax.nn.silu": lambda bb, call: bb.call_te(fast_silu, call.args[0]),
}
_FLOAT32_ONLY = {"relax.sigmoid", "relax.nn.silu"}  # other dtypes keep the exact op


def fast_math(mod: tvm.IRModule) -> tvm.IRModule:
    """Replace exp / erf / tanh / softmax by TOPI's fast approximations."""
    return FastMath()(mod)


@expr_functor.mutator
class _FastMathRewriter(PyExprMutator):
    def visit_call_(self, call):
        if isinstance(call.op, tvm.ir.Op) and call.op.name in _FAST:
            if call.op.name in _FLOAT32_ONLY and not _float32(call):
                return super().visit_call_(call)
            return _FAST[call.op.name](self.builder_, call)
        return super().visit_call_(call)


@tvm.transform.module_pass(opt_level=0, name="mcc.FastMath")
class FastMath:
    """Module pass form of :func:`fast_math`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return rewrite_functions(_FastMathRewriter(mod), mod)
