"""ONNX BitCast (opset 26): reinterpret each element's bits as another type of the same width."""

from __future__ import annotations

import tvm
from tvm import relax, te, tirx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter, get_type

from mcc.frontends.onnx_ops import register


@register("BitCast")
class BitCast(OnnxOpConverter):
    @classmethod
    def _impl_v26(cls, bb, inputs, attr, params):
        data = bb.normalize(inputs[0])
        source, to = str(data.ty.dtype), str(get_type(attr["to"]))
        if source == to:
            return data
        if "bool" in (source, to):  # TVM's bool is not an 8-bit storage type: 0/1 either way
            return relax.op.astype(data, to)
        if tvm.DataType(source).bits != tvm.DataType(to).bits:
            raise ValueError(f"BitCast from {source} to {to}: the bit widths differ")

        def compute(x):
            return te.compute(x.shape, lambda *i: tirx.reinterpret(to, x(*i)), name="bitcast")

        return bb.emit_te(compute, data, primfunc_name_hint="bitcast")
