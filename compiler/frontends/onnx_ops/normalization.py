"""LayerNormalization with all three ONNX outputs (TVM's converter returns only Y and
placeholders for Mean / InvStdDev, which training-exported graphs do read)."""

from __future__ import annotations

from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import ONNX_DTYPES, const, dtype_of


@register("LayerNormalization")
class LayerNormalization(OnnxOpConverter):
    @classmethod
    def _impl_v17(cls, bb, inputs, attr, params):
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        rank = int(x.ty.ndim)  # symbolic dims (batch, sequence) are fine
        axis = attr.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        axes = list(range(axis, rank))
        dtype = dtype_of(x)
        stash = ONNX_DTYPES.get(attr.get("stash_type", 1), "float32")
        eps = attr.get("epsilon", 1e-5)
        op = relax.op
        if attr["tvm_custom"]["num_outputs"] == 1 and stash == dtype:  # Y only: one fused op
            if bias is None:
                bias = op.zeros_like(scale)
            return op.nn.layer_norm(x, scale, bias, axes, eps)
        xs = op.astype(x, stash) if stash != dtype else x
        mean = op.mean(xs, axes, keepdims=True)
        centered = op.subtract(xs, mean)
        var = op.mean(op.multiply(centered, centered), axes, keepdims=True)
        inv_std = op.rsqrt(op.add(var, const(eps, stash)))
        normalized = op.multiply(centered, inv_std)
        if stash != dtype:
            normalized = op.astype(normalized, dtype)
        y = op.multiply(normalized, scale)
        if bias is not None:
            y = op.add(y, bias)
        return relax.Tuple([y, mean, inv_std])
