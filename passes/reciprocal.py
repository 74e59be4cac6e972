"""Division by a constant as multiplication by its reciprocal, for int8 modules.

A vector division costs several times a multiplication (``vdivps`` on a 512-bit register:
one every ~5 cycles on Zen 4/5, against two multiplies per cycle), and a transformer has
divisions by constants in its hot epilogues: GELU's ``x / sqrt(2)`` (fused into the int8
dense kernel before it) and attention's ``scores / sqrt(d)`` (the QK^T kernel's epilogue),
12288 16-lane divisions per call each at BERT-small sizes.

``x * (1 / c)`` differs from ``x / c`` by at most one unit in the last place, far below
int8's rounding step, so the int8 pipeline (mcc.driver.quantization) applies it; fp32
modules keep exact division. Only float constants whose every value and reciprocal are
finite and nonzero are rewritten.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from mcc.passes.rewrite import rewrite_functions

_DIVIDE = "relax.divide"


def _reciprocal(expr) -> np.ndarray | None:
    if not isinstance(expr, tvm.ir.GenericConst):
        return None
    value = expr.value.numpy()
    if value.dtype not in (np.float32, np.float64):
        return None
    with np.errstate(divide="ignore", over="ignore"):
        inverse = (1.0 / value.astype(np.float64)).astype(value.dtype)
    if not (np.isfinite(value).all() and np.isfinite(inverse).all() and (inverse != 0).all()
            and (value != 0).all()):
        return None
    return inverse


@relax.expr_functor.mutator
class _Reciprocal(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == _DIVIDE:
            inverse = _reciprocal(call.args[1])
            if inverse is not None:
                return relax.op.multiply(call.args[0], relax.const(inverse))
        return call


def divide_by_reciprocal(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with ``divide(x, c)`` as ``multiply(x, 1 / c)`` (constant ``c``)."""
    return rewrite_functions(_Reciprocal(mod), mod)
