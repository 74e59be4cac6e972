"""Forms of ONNX ops that TVM's importer gets wrong: SpaceToDepth's ``mode`` attribute
(CRD, added in opset 25; TVM always rearranges DCR), TopK on unsigned integers
(TVM's sort kernel rejects them at run time: "Unsupported input dtype: uint64") and
RMSNormalization over every axis (``axis=0``: TVM's rms_norm kernel fails to build)."""

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


@register("RMSNormalization")
class RMSNormalization(onnx_frontend.RMSNormalization):
    """Over every axis (axis 0), as x / sqrt(mean(x^2) + epsilon) * scale in plain ops."""

    @classmethod
    def _impl_v23(cls, bb, inputs, attr, params):
        data, scale = inputs[0], inputs[1]
        ndim = onnx_frontend._get_known_tensor_rank(data)
        axis = attr.get("axis", -1)
        if ndim is None or axis not in (0, -ndim):
            return super()._impl_v23(bb, inputs, attr, params)
        dtype = dtype_of(data)
        compute = "float32" if attr.get("stash_type", 1) == 1 else dtype
        x = op.astype(data, compute) if compute != dtype else data
        s = op.astype(scale, compute) if dtype_of(scale) != compute else scale
        mean = op.mean(op.multiply(x, x), axis=list(range(ndim)), keepdims=True)
        eps = const(attr.get("epsilon", 1e-05), compute)
        out = op.multiply(op.divide(x, op.sqrt(op.add(mean, eps))), s)
        return op.astype(out, dtype) if compute != dtype else out
