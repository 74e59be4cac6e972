"""Microsoft contrib ops (domain ``com.microsoft``) that exported models commonly carry.

ONNX Runtime's fusions write them into saved models (BERT/GPT-2 exports optimized with
``onnxruntime.transformers``). TVM's importer looks ops up by name alone, so the
importer renames such nodes to ``com.microsoft.<Op>`` before conversion
(:func:`namespace_contrib_ops`) and the converters here are registered under those
names: a contrib ``Attention`` or ``Gelu`` never meets the ONNX op of the same name.
A contrib op without a converter here is rejected before conversion, by name, node and
domain. Semantics follow ONNX Runtime's CPU kernels (``docs/ContribOperators.md``).
"""

from __future__ import annotations

from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as tvm_onnx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import const, dtype_of

DOMAIN = "com.microsoft"
op = relax.op


def contrib_name(op_type: str) -> str:
    """The converter-map name of the contrib op ``op_type``."""
    return f"{DOMAIN}.{op_type}"


def namespace_contrib_ops(proto):
    """A copy of ``proto`` whose com.microsoft nodes (in every subgraph) are renamed to
    :func:`contrib_name` in the default domain; ``proto`` itself when it has none."""
    import onnx

    def graphs(graph):
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else list(attr.graphs)):
                    yield from graphs(sub)

    if not any(n.domain == DOMAIN for g in graphs(proto.graph) for n in g.node):
        return proto
    renamed = onnx.ModelProto()
    renamed.CopyFrom(proto)
    for graph in graphs(renamed.graph):
        for node in graph.node:
            if node.domain == DOMAIN:
                node.op_type = contrib_name(node.op_type)
                node.domain = ""
    return renamed


def _input(inputs, index):
    return inputs[index] if len(inputs) > index else None


def _contrib(op_type: str):
    return register(contrib_name(op_type))


@_contrib("FusedMatMul")
class FusedMatMul(OnnxOpConverter):
    """``alpha * op(A) @ op(B)``, op transposing the last two axes when transA/transB."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        a, b = inputs[0], inputs[1]
        if attr.get("transBatchA", 0) or attr.get("transBatchB", 0):
            raise ValueError("com.microsoft FusedMatMul with transBatchA/transBatchB is not "
                             "supported")

        def last_two_swapped(x):
            rank = int(x.ty.ndim)
            if rank < 2:
                return x
            axes = list(range(rank))
            axes[-1], axes[-2] = axes[-2], axes[-1]
            return op.permute_dims(x, axes)

        if attr.get("transA", 0):
            a = last_two_swapped(a)
        if attr.get("transB", 0):
            b = last_two_swapped(b)
        out = op.matmul(a, b)
        alpha = attr.get("alpha", 1.0)
        if alpha != 1.0:
            out = op.multiply(out, const(alpha, dtype_of(inputs[0])))
        return out


@_contrib("Gelu")
class Gelu(OnnxOpConverter):
    """The exact (erf) GELU."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        return op.nn.gelu(inputs[0])


@_contrib("BiasGelu")
class BiasGelu(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        return op.nn.gelu(op.add(inputs[0], inputs[1]))


@_contrib("FastGelu")
class FastGelu(OnnxOpConverter):
    """The tanh approximation, with an optional bias added first."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        if _input(inputs, 1) is not None:
            x = op.add(x, inputs[1])
        return op.nn.gelu_tanh(x)


@_contrib("QuickGelu")
class QuickGelu(OnnxOpConverter):
    """``x * sigmoid(alpha * x)`` (alpha 1.702 by default)."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        alpha = const(attr.get("alpha", 1.702), dtype_of(x))
        return op.multiply(x, op.sigmoid(op.multiply(alpha, x)))


class _SkipNorm(OnnxOpConverter):
    """Shared by SkipLayerNormalization and SkipSimplifiedLayerNormalization: normalize
    ``input + skip (+ bias)`` over the last axis. Outputs: output, mean, inv_std_var (each
    keeping the last axis as 1), input_skip_bias_sum."""

    simplified = False

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x, skip, gamma = inputs[0], inputs[1], inputs[2]
        if cls.simplified:
            beta, bias = None, _input(inputs, 3)
        else:
            beta, bias = _input(inputs, 3), _input(inputs, 4)
        dtype = dtype_of(x)
        eps = attr.get("epsilon", 1e-12)
        summed = op.add(x, skip)
        if bias is not None:
            summed = op.add(summed, bias)
        summed = bb.normalize(summed)
        stash = bb.normalize(op.astype(summed, "float32")) if dtype != "float32" else summed
        if cls.simplified:
            mean = op.zeros_like(op.mean(stash, [-1], keepdims=True))
            centered = stash
        else:
            mean = bb.normalize(op.mean(stash, [-1], keepdims=True))
            centered = bb.normalize(op.subtract(stash, mean))
        var = op.mean(op.multiply(centered, centered), [-1], keepdims=True)
        inv_std = bb.normalize(op.rsqrt(op.add(var, const(eps, "float32"))))
        out = op.multiply(centered, inv_std)
        if dtype != "float32":
            out = op.astype(out, dtype)
        out = op.multiply(out, gamma)
        if beta is not None:
            out = op.add(out, beta)
        return relax.Tuple([bb.normalize(out), bb.normalize(mean), inv_std, summed])


@_contrib("SkipLayerNormalization")
class SkipLayerNormalization(_SkipNorm):
    simplified = False


@_contrib("SkipSimplifiedLayerNormalization")
class SkipSimplifiedLayerNormalization(_SkipNorm):
    simplified = True


# TVM's converter for the contrib Attention (packed QKV weight, optional bias and
# 2-D/3-D mask; rejects rotary, past state, custom scale and unidirectional by name).
register(contrib_name("Attention"), tvm_onnx.Attention)
# and for EmbedLayerNormalization (word + position (+ segment) embeddings, then LayerNorm)
register(contrib_name("EmbedLayerNormalization"), tvm_onnx.EmbedLayerNormalization)



def _dynamic_quantize(bb, x):
    """(codes, scale, zero point) of ONNX DynamicQuantizeLinear (uint8, one scale for the
    tensor), all in ``x``'s float dtype: how ONNX Runtime quantizes the activations of its
    quantized GEMMs."""
    dtype = dtype_of(x)
    zero = const(0.0, dtype)
    low, high = op.minimum(op.min(x), zero), op.maximum(op.max(x), zero)
    scale = op.divide(op.subtract(high, low), const(255.0, dtype))
    scale = bb.normalize(op.where(op.equal(scale, zero), const(1.0, dtype), scale))
    zero_point = bb.normalize(op.clip(op.round(op.negative(op.divide(low, scale))), 0, 255))
    return op.clip(op.add(op.round(op.divide(x, scale)), zero_point), 0, 255), scale, zero_point


def _dynamic_quantized(bb, x):
    """``x`` through DynamicQuantizeLinear and back (the rounding of the activations)."""
    q, scale, zero_point = _dynamic_quantize(bb, x)
    return op.multiply(op.subtract(q, zero_point), scale)


@_contrib("DynamicQuantizeLSTM")
class DynamicQuantizeLSTM(OnnxOpConverter):
    """An LSTM with int8 weights (``quantize_dynamic`` of an LSTM model). Like ONNX
    Runtime, the input sequence and each step's hidden state are quantized to uint8
    (DynamicQuantizeLinear) and multiplied by the int8 weights in integers (mcc's u8 x s8
    kernel, ``quantized._int8_matmul``), then scaled: the recurrent product reads a
    quarter of the bytes of fp32 weights, which is what a one-row product costs. Where
    the weights' zero points differ by column, they are dequantized once (constants fold
    at compile time) and multiplied in float. Weights here are [directions, in, 4*hidden]
    (transposed against ONNX LSTM's); scales and zero points per direction or per gate
    column."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        from mcc.frontends.onnx_ops.rnn import LSTM

        x = inputs[0]
        dtype = dtype_of(x)
        integer = []  # (dequantized weight expr, raw weight, scale, zero point)

        class QuantizedLSTM(LSTM):
            @staticmethod
            def _matmul(a, b):
                exact = _integer_matmul(bb, a, b, integer)
                return exact if exact is not None else op.matmul(_dynamic_quantized(bb, a), b)

        def dequantized(weight, scale, zero_point):
            dims = [int(d) for d in scale.ty.shape]
            shape = [dims[0], 1, 1] if len(dims) == 1 else [dims[0], 1, dims[1]]
            values = op.multiply(op.subtract(op.astype(weight, dtype), op.reshape(
                op.astype(zero_point, dtype), shape)), op.reshape(scale, shape))
            values = bb.emit(op.permute_dims(values, [0, 2, 1]))  # a var: found by identity
            integer.append((values, weight, scale, zero_point))
            return values

        w = dequantized(inputs[1], inputs[8], inputs[9])
        r = dequantized(inputs[2], inputs[10], inputs[11])
        rest = [_input(inputs, i) for i in range(3, 8)]
        return QuantizedLSTM._impl_v7(bb, [x, w, r, *rest], attr, params)


def _integer_matmul(bb, a, b, integer):
    """``a @ b`` in integers where ``b`` is direction d of one of the ``integer`` weights
    (``permute_dims(take(weight, d))``, as the LSTM driver slices it) with one zero point
    for the direction: DynamicQuantizeLinear of ``a``, the exact u8 x s8 product, then
    ``a_scale * w_scale``. None where that does not apply."""
    import numpy as np
    import tvm

    from mcc.frontends.onnx_ops.quantized import _int8_matmul

    Const = tvm.ir.GenericConst
    if not (isinstance(b, relax.Call) and b.op.name == "relax.permute_dims"):
        return None
    sliced = b.args[0]
    if isinstance(sliced, relax.Var):  # normalized into a binding of its own
        sliced = bb.lookup_binding(sliced)
    if not (isinstance(sliced, relax.Call) and sliced.op.name == "relax.take"):
        return None
    taken, index = sliced.args
    found = [entry for entry in integer if taken.same_as(entry[0])]
    if not found or not isinstance(index, Const):
        return None
    _, weight, scale, zero_point = found[0]
    if not all(isinstance(v, Const) for v in (weight, scale, zero_point)):
        return None
    d = int(index.value.numpy())
    zp = np.unique(zero_point.value.numpy()[d])
    if zp.size != 1:
        return None  # zero points that differ by column: the float form
    q, a_scale, a_zero = _dynamic_quantize(bb, a)
    product = _int8_matmul(bb, bb.normalize(op.astype(q, "uint8")),
                           relax.const(weight.value.numpy()[d]),
                           bb.normalize(op.astype(a_zero, "uint8")),
                           relax.const(zp.reshape(())))
    if product is None:
        return None
    w_scale = relax.const(np.asarray(scale.value.numpy()[d], np.float32))
    return op.multiply(op.astype(product, dtype_of(a)), op.multiply(a_scale, w_scale))
