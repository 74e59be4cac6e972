"""ReduceMax / ReduceMin that return -inf / +inf where ONNX does.

TVM starts a float max-reduction from the dtype's lowest *finite* value (and a
min-reduction from the highest), so the max of an all ``-inf`` row, or of an
empty set, comes out as -3.4e38 instead of -inf. Attention's fully-masked rows
depend on exactly that value (``Equal(ReduceMax(bias), -inf)`` in its function
body). TVM's converter does the reduction; mcc reduces a "has a larger value"
flag ("any element other than the infinity", by a max-reduction for ReduceMin too; a
NaN counts as other, so an all-NaN row stays NaN) and puts the infinity back where no
element has the flag. Boolean
inputs (ReduceMax as "any") reduce as uint8: TVM has no bool max.
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const

op = relax.op


def _wrap(op_type: str, sign: float):
    infinity = sign * np.inf

    class Converter(OnnxOpConverter):
        @classmethod
        def get_converter(cls, opset):
            from mcc.frontends.onnx_ops import _tvm_map

            tvm_impl = _tvm_map()[op_type].get_converter(opset)
            any_impl = _tvm_map()["ReduceMax"].get_converter(opset)  # "any" of 0/1 flags

            def convert(bb, inputs, attr, params):
                data = inputs[0]
                dtype = str(getattr(getattr(data, "ty", None), "dtype", ""))
                if dtype == "bool":  # TVM has no bool max/min: any / all over uint8
                    wide = [bb.normalize(op.astype(data, "uint8")), *list(inputs)[1:]]
                    result = tvm_impl(bb, wide, attr, params)
                    return op.astype(bb.normalize(result), "bool")
                result = tvm_impl(bb, inputs, attr, params)
                if dtype not in ("float16", "float32", "float64") or \
                        not isinstance(result, relax.Expr):
                    return result
                beyond = op.less(data, const(infinity, dtype)) if sign > 0 else \
                    op.greater(data, const(infinity, dtype))
                # LLVM's != is ordered, so a NaN is counted by its own flag; the flags are
                # combined as floats (a vectorised "or" of two bool buffers fails LLVM's
                # verifier: "or <16 x i8>, <16 x i1>")
                flag = bb.normalize(op.maximum(op.astype(beyond, dtype),
                                               op.astype(op.isnan(data), dtype)))
                flags = [flag, *list(inputs)[1:]]
                some = bb.normalize(any_impl(bb, flags, attr, params))
                return op.where(op.greater(some, const(0.5, dtype)), result,
                                const(infinity, dtype))

            return convert

    Converter.__name__ = op_type
    return register(op_type)(Converter)


ReduceMax = _wrap("ReduceMax", -1.0)
ReduceMin = _wrap("ReduceMin", 1.0)
