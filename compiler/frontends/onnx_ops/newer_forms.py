"""Forms of ONNX ops that TVM's importer gets wrong: SpaceToDepth's ``mode`` attribute
(CRD, added in opset 25; TVM always rearranges DCR) and TopK on unsigned integers
(TVM's sort kernel rejects them at run time: "Unsupported input dtype: uint64")."""

from __future__ import annotations

from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const, dtype_of

op = relax.op


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


@register("SpaceToDepth")
class SpaceToDepth(onnx_frontend.SpaceToDepth):
    """DCR (default): blocks before channels; CRD: channels before blocks."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        if _text(attr.get("mode"), "DCR") != "CRD":
            return super()._impl_v1(bb, inputs, attr, params)
        bs = int(attr["blocksize"])
        b, c, h, w = inputs[0].ty.shape
        x = op.reshape(inputs[0], (b, c, h // bs, bs, w // bs, bs))
        x = op.permute_dims(x, [0, 1, 3, 5, 2, 4])
        return op.reshape(x, (b, c * bs * bs, h // bs, w // bs))


@register("TopK")
class TopK(onnx_frontend.TopK):
    """Unsigned inputs are sorted by an order-preserving int64 key; the values are then
    gathered from the input by the indices found."""

    @classmethod
    def _unsigned(cls, impl, bb, inputs, attr, params):
        data = inputs[0]
        dtype = dtype_of(data) if hasattr(data, "ty") and hasattr(data.ty, "dtype") else ""
        if not dtype.startswith("uint"):
            return impl(bb, inputs, attr, params)
        key = op.astype(data, "int64")
        if dtype == "uint64":  # the same bits with the sign bit flipped: order kept
            key = op.bitwise_xor(key, const(-(2**63), "int64"))
        result = bb.normalize(impl(bb, [key] + list(inputs[1:]), attr, params))
        indices = bb.normalize(relax.TupleGetItem(result, 1))
        axis = attr.get("axis", -1)
        values = op.gather_elements(data, indices, axis)
        return relax.Tuple([values, indices])

    @classmethod
    def _impl_v11(cls, bb, inputs, attr, params):
        return cls._unsigned(super()._impl_v11, bb, inputs, attr, params)

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        return cls._unsigned(super()._impl_v1, bb, inputs, attr, params)
