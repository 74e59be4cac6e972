"""Range whose bounds are symbolic shape dims: an arange of a derivable length.

BERT-type exports build position ids and attention-mask index grids as
``Range(0, Gather(Shape(input_ids), 1), 1)``. With symbolic input dims TVM's
converter receives ``limit`` as the PrimExpr ``seq`` but still computes the length
as a tensor and binds it to a fresh ``range_len_0`` by ``match_cast`` of a
run-time value: the result is ``(range_len_0,)`` instead of ``(seq,)``. Relax
then cannot tell that the position ids line up with ``(batch, seq, hidden)``
(broadcasts lose their shape, FoldConstant's ``emit_te`` fails) and fused kernels
take extents such as ``8 * (range_len_0 * range_len_0_1)`` that no buffer shape
defines ("has not been computed" at build).

Here a Range whose start / limit are integer constants or shape-derived PrimExprs
and whose delta is a non-zero integer constant becomes ``R.arange(start, limit,
delta)``: its length is an expression of the input dims. That length must be
provably non-negative (ONNX clamps a negative count to 0, ``R.arange`` cannot) with
every shape var >= 0; otherwise, and for anything else, TVM's converter runs.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter, get_constant

from mcc.frontends.onnx_ops import register

_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _scalar(x, params):
    """A Range operand as a Python int, an integer PrimExpr, or None (anything else)."""
    x = get_constant(x, params)
    if hasattr(x, "value") and tvm.ir.is_prim_expr(getattr(x, "value", None)):
        x = x.value  # a Relax prim value
    if isinstance(x, tvm.ir.GenericConst):
        value = x.value.numpy()
        if value.size != 1 or value.dtype.kind not in "iu":
            return None
        return int(value.reshape(()))
    if tvm.ir.is_prim_expr(x):
        dtype = str(getattr(x, "dtype", None) or x.ty)
        if dtype not in _INT_DTYPES:
            return None
        if isinstance(x, tirx.IntImm):
            return int(x.value)
        return x if dtype == "int64" else tirx.Cast("int64", x)
    return None


def _dtype(x, params) -> str | None:
    x = get_constant(x, params)
    if hasattr(x, "value") and tvm.ir.is_prim_expr(getattr(x, "value", None)):
        x = x.value  # a Relax prim value
    if tvm.ir.is_prim_expr(x):
        return str(getattr(x, "dtype", None) or x.ty)
    ty = getattr(x, "ty", None)
    return str(ty.dtype) if hasattr(ty, "dtype") else None


def symbolic_range(bb, inputs, params):
    """``R.arange`` of a length derived from the input dims, or None where that does
    not apply (constant Range, run-time values, symbolic or zero delta, float)."""
    out_dtype = _dtype(inputs[0], params)
    if out_dtype not in _INT_DTYPES:
        return None
    start, limit, delta = (_scalar(x, params) for x in inputs[:3])
    if start is None or limit is None or not isinstance(delta, int) or delta == 0:
        return None
    if isinstance(start, int) and isinstance(limit, int):
        return None  # all constant: TVM's converter folds it to a constant
    start_e = tirx.IntImm("int64", start) if isinstance(start, int) else start
    limit_e = tirx.IntImm("int64", limit) if isinstance(limit, int) else limit
    span = limit_e - start_e if delta > 0 else start_e - limit_e
    step = abs(delta)
    count = tirx.floordiv(span + (step - 1), step)
    analyzer = tvm.sym.Analyzer()
    for var in tirx.analysis.undefined_vars(count):  # shape dims: never negative
        analyzer.update(var, tvm.sym.ConstIntBound(0, tvm.sym.ConstIntBound.POS_INF))
    if not analyzer.can_prove(count >= 0):
        return None
    positions = bb.normalize(relax.op.arange(start_e, limit_e, delta, out_dtype))
    dims = positions.ty.shape.values if hasattr(positions.ty.shape, "values") else None
    if dims is None or len(dims) != 1:
        return None
    return positions


@register("Range")
class Range(OnnxOpConverter):
    @classmethod
    def get_converter(cls, opset):
        from mcc.frontends.onnx_ops import _tvm_map

        tvm_impl = _tvm_map()["Range"].get_converter(opset)

        def convert(bb, inputs, attr, params):
            result = symbolic_range(bb, inputs, params)
            return result if result is not None else tvm_impl(bb, inputs, attr, params)

        return convert

