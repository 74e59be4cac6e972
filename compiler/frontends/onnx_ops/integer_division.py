"""Integer Div and Mod that never trap.

x86 raises SIGFPE (the process dies, exit 136) on an integer division by zero and
on INT_MIN / -1, and TVM's converters emit plain ``sdiv`` / ``srem``. ONNX leaves
both cases undefined; mcc defines them, matching numpy and ``onnx.reference``:

- ``x / 0 == 0`` and ``x mod 0 == 0`` (Mod with fmod=0 and fmod=1 alike);
- ``x / -1 == -x`` with two's-complement wrap-around (``INT_MIN / -1 == INT_MIN``),
  ``x mod -1 == 0``.

The divisor is made safe first (``where(b == 0 or b == -1, 1, b)``), then the
quotient / remainder is patched where the divisor was 0 or -1. Float division and
non-tensor (shape arithmetic) operands go to TVM's converters unchanged.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const

op = relax.op


def _int_dtype(expr) -> str | None:
    """The dtype of an integer tensor operand, else None (floats, prim values, shapes)."""
    if tvm.ir.is_prim_expr(expr) or not isinstance(expr, relax.Expr):
        return None
    try:
        dtype = str(expr.ty.dtype)
    except AttributeError:
        return None
    return dtype if dtype.startswith(("int", "uint")) else None


def numpy_safe(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """mcc's integer Div ("div") / Mod ("fmod", "mod") on numpy arrays, without traps."""
    a, b = np.asarray(a), np.asarray(b)
    signed = np.issubdtype(b.dtype, np.signedinteger)
    bad = (b == 0) | (b == -1) if signed else b == 0
    safe = np.where(bad, np.ones_like(b), b)
    with np.errstate(all="ignore"):
        if kind == "div":
            out = _trunc_div(a, safe).astype(a.dtype)
            if signed:
                out = np.where(b == -1, np.negative(a), out)
        else:
            out = (np.fmod if kind == "fmod" else np.mod)(a, safe).astype(a.dtype)
    return np.where(b == 0, np.zeros_like(out), out).astype(a.dtype)


def _trunc_div(a, b):
    q, r = np.divmod(a, b)
    return q + ((r != 0) & ((a < 0) != (b < 0))).astype(q.dtype)


def _safe(bb, inputs, convert, kind: str):
    """``convert(bb, inputs)`` (TVM's converter) with a divisor that cannot trap."""
    a, b = inputs
    dtype, b_dtype = _int_dtype(a), _int_dtype(b)
    if dtype is None or b_dtype is None:
        return convert(bb, inputs)
    if isinstance(a, tvm.ir.GenericConst) and isinstance(b, tvm.ir.GenericConst):
        return relax.const(numpy_safe(a.value.numpy(), b.value.numpy(), kind), dtype)
    signed = b_dtype.startswith("int")
    zero = op.equal(b, const(0, b_dtype))
    minus_one = op.equal(b, const(-1, b_dtype)) if signed else None
    bad = op.logical_or(zero, minus_one) if signed else zero
    safe_b = bb.normalize(op.where(bad, const(1, b_dtype), b))
    out = bb.normalize(convert(bb, [a, safe_b]))
    if kind == "div" and signed:  # x / -1 = -x (wraps: INT_MIN / -1 = INT_MIN)
        out = op.where(minus_one, op.subtract(const(0, dtype), a), out)
    # (x mod -1 is already 0: the remainder of a division by 1)
    return op.where(zero, const(0, dtype), out)


@register("Div")
class Div(onnx_frontend.Div):
    """ONNX Div; integer division by 0 gives 0 and INT_MIN / -1 gives INT_MIN."""

    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        parent = super()._impl_v7.__func__

        def convert(bb_, ins):
            return parent(cls, bb_, ins, attr, params)

        return _safe(bb, inputs, convert, "div")


@register("Mod")
class Mod(onnx_frontend.Mod):
    """ONNX Mod (fmod=0: sign of the divisor, fmod=1: sign of the dividend); x mod 0 is 0."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        parent = super()._impl_v10.__func__

        def convert(bb_, ins):
            return parent(cls, bb_, ins, attr, params)

        return _safe(bb, inputs, convert, "fmod" if attr.get("fmod", 0) else "mod")
