"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (absent from TVM's importer).

loss[n, d...] = -input[n, target[n, d...], d...] * weight[target]; targets equal to
``ignore_index`` contribute 0 and no weight; "mean" divides by the summed weights.
"""

from __future__ import annotations

from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const, dtype_of, shape_of


def _reduction(attr) -> str:
    value = attr.get("reduction", b"mean")
    return value.decode() if isinstance(value, bytes) else value


def nll_loss(log_prob, target, weight, reduction: str, ignore_index):
    op = relax.op
    dtype = dtype_of(log_prob)
    target_dtype = dtype_of(target)
    if ignore_index is not None:
        ignored = op.equal(target, const(ignore_index, target_dtype))
        safe = op.where(ignored, const(0, target_dtype), target)
    else:
        ignored, safe = None, target
    picked = op.squeeze(op.gather_elements(log_prob, op.expand_dims(safe, 1), axis=1), [1])
    if weight is not None:
        w = op.take(weight, safe, axis=0)
    else:
        w = op.ones(shape_of(target), dtype)
    if ignored is not None:
        w = op.where(ignored, const(0, dtype), w)
    loss = op.multiply(op.negative(picked), w)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return op.sum(loss)
    return op.divide(op.sum(loss), op.sum(w))


@register("NegativeLogLikelihoodLoss")
class NegativeLogLikelihoodLoss(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        weight = inputs[2] if len(inputs) > 2 else None
        return nll_loss(inputs[0], inputs[1], weight, _reduction(attr),
                        attr.get("ignore_index"))


@register("SoftmaxCrossEntropyLoss")
class SoftmaxCrossEntropyLoss(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        log_prob = bb.normalize(relax.op.nn.log_softmax(inputs[0], axis=1))
        weight = inputs[2] if len(inputs) > 2 else None
        loss = nll_loss(log_prob, inputs[1], weight, _reduction(attr), attr.get("ignore_index"))
        if attr["tvm_custom"]["num_outputs"] > 1:
            return relax.Tuple([loss, log_prob])
        return loss
