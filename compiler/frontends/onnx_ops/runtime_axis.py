"""CumSum / CumProd whose ``axis`` is a run-time input (a graph input, not a constant),
and Expand to a run-time shape.

The axis does not change the output's shape, so mcc computes the scan along every
axis the input has and picks the one ``axis`` names at run time (negative axes
count from the end). A rank-r input costs r scans; with a constant axis (what
exporters write) the converter is used as is.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register

op = relax.op


def _runtime_axis(op_type: str, inner: type | None = None):
    class Converter(OnnxOpConverter):
        @classmethod
        def get_converter(cls, opset):
            from mcc.frontends.onnx_ops import _tvm_map

            base = inner or _tvm_map()[op_type]
            impl = base.get_converter(opset)

            def convert(bb, inputs, attr, params):
                axis = inputs[1] if len(inputs) > 1 else None
                if axis is None or isinstance(axis, tvm.ir.GenericConst):
                    return impl(bb, inputs, attr, params)
                data = bb.normalize(inputs[0])
                rank = data.ty.ndim
                axis = bb.normalize(op.astype(op.reshape(axis, []), "int64"))
                axis = bb.normalize(op.where(op.less(axis, relax.const(0, "int64")),
                                             op.add(axis, relax.const(rank, "int64")), axis))
                result = None
                for k in reversed(range(rank)):
                    scan = bb.normalize(impl(bb, [data, relax.const(np.int64(k))], attr,
                                             params))
                    result = scan if result is None else op.where(
                        op.equal(axis, relax.const(k, "int64")), scan, result)
                return result

            return convert

    Converter.__name__ = op_type
    return Converter


def _register() -> None:
    from mcc.frontends.onnx_ops.elementwise import CumProd

    register("CumSum")(_runtime_axis("CumSum"))
    register("CumProd")(_runtime_axis("CumProd", CumProd))


_register()


class _Expand(OnnxOpConverter):
    """Expand to a run-time shape tensor with ONNX's two-way broadcast: a target dim of 1
    keeps the input's dim (TVM's dynamic path takes the target literally)."""

    @classmethod
    def get_converter(cls, opset):
        from mcc.frontends.onnx_ops import _tvm_map

        impl = _tvm_map()["Expand"].get_converter(opset)

        def convert(bb, inputs, attr, params):
            data, shape = inputs[0], inputs[1]
            dims = getattr(getattr(data, "ty", None), "shape", None)
            if not isinstance(shape, relax.Var) or not isinstance(shape.ty, relax.TensorType) \
                    or dims is None or not all(isinstance(d, tvm.tirx.IntImm)
                                               for d in dims.values):
                return impl(bb, inputs, attr, params)
            data_dims = [int(d) for d in dims.values]
            length = int(shape.ty.shape.values[0])
            if length < len(data_dims):
                return impl(bb, inputs, attr, params)
            aligned = [1] * (length - len(data_dims)) + data_dims
            ones = np.array([d == 1 for d in aligned])
            target = op.where(relax.const(ones), op.astype(shape, "int64"),
                              relax.const(np.array(aligned, np.int64), "int64"))
            try:
                return impl(bb, [data, bb.normalize(target)], attr, params)
            except Exception:  # noqa: BLE001 - TVM's own path, as before
                return impl(bb, inputs, attr, params)

        return convert


register("Expand")(_Expand)
