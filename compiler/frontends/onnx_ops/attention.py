"""ONNX Attention (opset 23+): scaled dot-product attention with masks, KV cache,
grouped-query heads, softcap and the optional QK output.

TVM maps "Attention" to Microsoft's contrib op of the same name; this converter
follows the ONNX spec (and ``onnx.reference``'s semantics, e.g. a fully masked
query row gives zeros, not NaN). Shapes must be static.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import ONNX_DTYPES, const, dtype_of, shape_of


def _optional(inputs, index):
    return inputs[index] if len(inputs) > index else None


def _split_heads(bb, x, heads):
    """(B, S, H*D) -> (B, H, S, D)."""
    b, s, hidden = shape_of(x)
    x = bb.normalize(relax.op.reshape(x, (b, s, heads, hidden // heads)))
    return bb.normalize(relax.op.permute_dims(x, [0, 2, 1, 3]))


def _window_bias(q_len, kv_len, offset, left, right, causal):
    """Additive (0 / -inf) bias as numpy: causal and sliding-window constraints for a
    static offset (keys that precede the query block)."""
    i = np.arange(q_len).reshape(q_len, 1) + offset
    j = np.arange(kv_len).reshape(1, kv_len)
    allowed = np.ones((q_len, kv_len), dtype=bool)
    if causal:
        allowed &= j <= i
    if left >= 0:
        allowed &= (i - j) <= left
    if right >= 0:
        allowed &= (j - i) <= right
    return np.where(allowed, 0.0, -np.inf)


@register("Attention")
class Attention(OnnxOpConverter):
    @classmethod
    def _impl_v23(cls, bb, inputs, attr, params):
        op = relax.op
        q, k, v = inputs[0], inputs[1], inputs[2]
        mask, past_k, past_v = (_optional(inputs, i) for i in (3, 4, 5))
        nonpad = _optional(inputs, 6)
        dtype = dtype_of(q)
        rank = len(shape_of(q))
        if rank == 3:
            q = _split_heads(bb, q, attr["q_num_heads"])
            k = _split_heads(bb, k, attr["kv_num_heads"])
            v = _split_heads(bb, v, attr["kv_num_heads"])
        batch, q_heads, q_len, head = shape_of(q)
        scale = attr.get("scale", 1.0 / math.sqrt(head))
        root = const(math.sqrt(scale), dtype)
        if past_k is not None:
            k = bb.normalize(op.concat([past_k, k], axis=2))
            v = bb.normalize(op.concat([past_v, v], axis=2))
        present_k, present_v = k, v
        kv_heads, kv_len = shape_of(k)[1], shape_of(k)[2]
        past_len = shape_of(past_k)[2] if past_k is not None else 0

        neg_inf, zero = const(-np.inf, dtype), const(0.0, dtype)
        bias = None
        if mask is not None:
            mask_shape = shape_of(mask)
            pad = kv_len - mask_shape[-1]
            is_bool = dtype_of(mask) == "bool"
            if pad > 0:
                fill = np.zeros(mask_shape[:-1] + [pad], dtype=bool) if is_bool else None
                block = relax.const(fill) if is_bool else \
                    op.full(mask_shape[:-1] + [pad], neg_inf, dtype)
                mask = bb.normalize(op.concat([mask, block], axis=-1))
            if is_bool:
                mask = bb.normalize(op.where(mask, zero, neg_inf))
            bias = mask
        causal = bool(attr.get("is_causal", 0))
        left = attr.get("left_window_size", -1)
        right = attr.get("right_window_size", -1)
        if nonpad is not None and past_k is None and (causal or left >= 0 or right >= 0):
            bias = cls._per_batch_window(bb, bias, nonpad, batch, q_len, kv_len, causal,
                                         left, right, dtype)
        elif causal or left >= 0 or right >= 0:
            window = const(_window_bias(q_len, kv_len, past_len, left, right, causal), dtype)
            bias = window if bias is None else op.add(bias, window)
        if nonpad is not None:
            keys = relax.const(np.arange(kv_len, dtype=np.int64).reshape(1, kv_len), "int64")
            lengths = op.reshape(op.astype(nonpad, "int64"), (batch, 1))
            padding = op.where(op.less(keys, lengths), zero, neg_inf)
            padding = op.reshape(padding, (batch, 1, 1, kv_len))
            bias = padding if bias is None else op.add(bias, padding)
        if bias is None:
            bias = const(np.zeros((q_len, kv_len)), dtype)
        bias = bb.normalize(bias)

        if q_heads != kv_heads and q_heads % kv_heads == 0:
            k = op.repeat(k, q_heads // kv_heads, axis=1)
            v = op.repeat(v, q_heads // kv_heads, axis=1)
        qk = bb.normalize(op.matmul(op.multiply(q, root),
                                    op.permute_dims(op.multiply(k, root), [0, 1, 3, 2])))
        softcap = attr.get("softcap", 0.0)
        if softcap > 0:
            cap = const(softcap, dtype)
            qk = bb.normalize(op.multiply(op.tanh(op.divide(qk, cap)), cap))
        with_bias = bb.normalize(op.add(qk, bias))
        mode = attr.get("qk_matmul_output_mode", 0)
        qk_out = with_bias if mode == 2 else qk
        precision = ONNX_DTYPES.get(attr.get("softmax_precision"), dtype)
        logits = op.astype(with_bias, precision) if precision != dtype else with_bias
        probs = op.nn.softmax(logits, axis=-1)
        # (not max(bias) == -inf: TVM's max starts from the dtype's lowest finite value)
        allowed = op.astype(op.greater(bias, neg_inf), "int32")
        masked_row = op.equal(op.max(allowed, axis=-1, keepdims=True), relax.const(0, "int32"))
        probs = bb.normalize(op.where(masked_row, const(0.0, precision), probs))
        if mode == 3:
            qk_out = probs
        probs = op.astype(probs, dtype) if precision != dtype else probs
        y = op.matmul(probs, v)
        if rank == 3:
            y = op.reshape(op.permute_dims(y, [0, 2, 1, 3]), (batch, q_len, q_heads * shape_of(
                bb.normalize(v))[3]))
        qk_out = op.astype(qk_out, dtype) if dtype_of(bb.normalize(qk_out)) != dtype else qk_out
        outputs = [y, present_k, present_v, qk_out]
        count = attr["tvm_custom"]["num_outputs"]
        if count <= 1:
            return bb.normalize(y)
        return relax.Tuple([bb.normalize(o) for o in outputs[:count]])

    @classmethod
    def _per_batch_window(cls, bb, bias, nonpad, batch, q_len, kv_len, causal, left, right,
                          dtype):
        """Causal / window bias whose offset is ``nonpad_kv_seqlen[b] - q_len`` per batch."""
        op = relax.op
        i = relax.const(np.arange(q_len, dtype=np.int64).reshape(1, q_len, 1), "int64")
        j = relax.const(np.arange(kv_len, dtype=np.int64).reshape(1, 1, kv_len), "int64")
        offset = op.reshape(op.subtract(op.astype(nonpad, "int64"),
                                        relax.const(q_len, "int64")), (batch, 1, 1))
        pos = op.add(i, offset)  # absolute query position, (B, q, 1)
        allowed = None

        def both(a, b):
            return b if a is None else op.logical_and(a, b)

        if causal:
            allowed = both(allowed, op.less_equal(j, pos))
        if left >= 0:
            allowed = both(allowed, op.less_equal(op.subtract(pos, j),
                                                  relax.const(left, "int64")))
        if right >= 0:
            allowed = both(allowed, op.less_equal(op.subtract(j, pos),
                                                  relax.const(right, "int64")))
        window = op.reshape(op.where(allowed, const(0.0, dtype), const(-np.inf, dtype)),
                            (batch, 1, q_len, kv_len))
        return window if bias is None else op.add(bias, window)
