"""Small ONNX ops TVM's importer lacks or gets wrong, each a few Relax ops.

Swish, Celu, LpNormalization, variadic Sum / Max / Min as binary ops, CumProd, the STFT
windows (Hann, Hamming, Blackman: constants once their size is known), Pow across dtypes
(ONNX allows float ** int and int ** int; Relax's power wants one float dtype), IsInf's
detect_positive / detect_negative, Dropout's boolean mask at inference,
CenterCropPad, SwiGLU, ReverseSequence and OneHot.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

from mcc.frontends.onnx_ops import register
from mcc.frontends.onnx_ops._relax import ONNX_DTYPES, const, dtype_of

op = relax.op

def constant_value(expr, what: str) -> np.ndarray:
    """The numpy value of a constant operand (shape-like operands must be constants)."""
    import tvm

    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    raise ValueError(f"{what} must be a constant")


@register("Swish")
class Swish(OnnxOpConverter):
    @classmethod
    def _impl_v24(cls, bb, inputs, attr, params):
        x = inputs[0]
        alpha = const(attr.get("alpha", 1.0), dtype_of(x))
        return op.multiply(x, op.sigmoid(op.multiply(alpha, x)))


@register("Celu")
class Celu(OnnxOpConverter):
    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        x = inputs[0]
        dtype = dtype_of(x)
        alpha = const(attr.get("alpha", 1.0), dtype)
        zero = const(0.0, dtype)
        negative = op.multiply(alpha, op.subtract(op.exp(op.divide(x, alpha)),
                                                  const(1.0, dtype)))
        return op.add(op.maximum(zero, x), op.minimum(zero, negative))


@register("LpNormalization")
class LpNormalization(OnnxOpConverter):
    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        axis, p = attr.get("axis", -1), attr.get("p", 2)
        if p == 1:
            norm = op.sum(op.abs(x), axis=[axis], keepdims=True)
        elif p == 2:
            norm = op.sqrt(op.sum(op.multiply(x, x), axis=[axis], keepdims=True))
        else:
            raise ValueError(f"LpNormalization supports p=1 or p=2, got {p}")
        return op.divide(x, norm)


@register("CumProd")
class CumProd(OnnxOpConverter):
    @classmethod
    def _impl_v26(cls, bb, inputs, attr, params):
        x = inputs[0]
        axis = int(constant_value(inputs[1], "CumProd axis"))
        reverse = bool(attr.get("reverse", 0))
        if reverse:
            x = op.flip(x, axis)
        y = op.cumprod(x, axis=axis, exclusive=bool(attr.get("exclusive", 0)))
        return op.flip(y, axis) if reverse else y


class _Window(OnnxOpConverter):
    """A window of ``size`` samples: periodic (default) or symmetric."""

    @classmethod
    def _impl_v17(cls, bb, inputs, attr, params):
        size = int(constant_value(inputs[0], f"{cls.__name__} size"))
        dtype = ONNX_DTYPES.get(attr.get("output_datatype", 1), "float32")
        periodic = bool(attr.get("periodic", 1))
        n = np.arange(size, dtype=np.float64)
        denom = size if periodic else size - 1
        angle = 2 * np.pi * n / max(denom, 1)
        return const(cls.window(angle), dtype)


@register("HannWindow")
class HannWindow(_Window):
    @staticmethod
    def window(angle):
        return 0.5 - 0.5 * np.cos(angle)


@register("HammingWindow")
class HammingWindow(_Window):
    @staticmethod
    def window(angle):
        a0 = 25 / 46
        return a0 - (1 - a0) * np.cos(angle)


@register("BlackmanWindow")
class BlackmanWindow(_Window):
    @staticmethod
    def window(angle):
        return 0.42 - 0.5 * np.cos(angle) + 0.08 * np.cos(2 * angle)


@register("Pow")
class Pow(OnnxOpConverter):
    @classmethod
    def _impl_v7(cls, bb, inputs, attr, params):
        x, y = inputs
        out = dtype_of(x)
        if out == dtype_of(y) and out.startswith(("float", "bfloat")):
            return op.power(x, y)
        work = out if out.startswith(("float", "bfloat")) else "float64"
        result = op.power(op.astype(x, work), op.astype(y, work))
        return op.astype(result, out) if work != out else result


@register("IsInf")
class IsInf(OnnxOpConverter):
    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        x = inputs[0]
        inf = op.isinf(x)
        zero = const(0.0, dtype_of(x))
        if not attr.get("detect_positive", 1):
            inf = op.logical_and(inf, op.less(x, zero))
        if not attr.get("detect_negative", 1):
            inf = op.logical_and(inf, op.greater(x, zero))
        return inf


@register("Dropout")
class Dropout(OnnxOpConverter):
    """Inference (or ratio 0): Y = X and an all-true mask. Training mode with a ratio > 0
    is random: not compiled."""

    @classmethod
    def _impl_v12(cls, bb, inputs, attr, params):
        x = inputs[0]
        ratio = inputs[1] if len(inputs) > 1 else None
        training = inputs[2] if len(inputs) > 2 else None
        if training is not None and bool(constant_value(training, "Dropout training_mode")):
            if ratio is None or float(constant_value(ratio, "Dropout ratio")) != 0.0:
                raise ValueError("Dropout in training mode (random) is not supported")
        if attr["tvm_custom"]["num_outputs"] > 1:
            return relax.Tuple([x, op.ones_like(x, "bool")])
        return x


@register("CenterCropPad")
class CenterCropPad(OnnxOpConverter):
    """Crop (centered, extra element at the end) or zero-pad each listed axis to ``shape``."""

    @classmethod
    def _impl_v18(cls, bb, inputs, attr, params):
        from mcc.frontends.onnx_ops._relax import shape_of

        x = inputs[0]
        target = [int(v) for v in constant_value(inputs[1], "CenterCropPad shape")]
        dims = shape_of(x)
        axes = list(attr.get("axes", range(len(dims))))
        axes = [a + len(dims) if a < 0 else a for a in axes]
        pads = [0] * (2 * len(dims))
        for axis, size in zip(axes, target):
            dim = dims[axis]
            if size < dim:
                start = (dim - size) // 2
                x = op.strided_slice(x, [axis], [start], [start + size])
            elif size > dim:
                before = (size - dim) // 2
                pads[2 * axis], pads[2 * axis + 1] = before, size - dim - before
        if any(pads):
            x = op.nn.pad(x, pads)
        return x


@register("SwiGLU")
class SwiGLU(OnnxOpConverter):
    """Swish_alpha(A) * B (A, B of one shape)."""

    @classmethod
    def _impl_v28(cls, bb, inputs, attr, params):
        a, b = inputs[0], inputs[1]
        alpha = const(attr.get("alpha", 1.0), dtype_of(a))
        return op.multiply(op.multiply(a, op.sigmoid(op.multiply(alpha, a))), b)


@register("ReverseSequence")
class ReverseSequence(OnnxOpConverter):
    """Reverse the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch row:
    a gather whose index is ``len - 1 - t`` inside the prefix and ``t`` after it."""

    @classmethod
    def _impl_v10(cls, bb, inputs, attr, params):
        from mcc.frontends.onnx_ops._relax import shape_of

        x, lengths = inputs[0], inputs[1]
        dims = shape_of(x)
        time_axis, batch_axis = attr.get("time_axis", 0), attr.get("batch_axis", 1)
        steps = dims[time_axis]
        shape = [1] * len(dims)
        shape[time_axis] = steps
        t = relax.const(np.arange(steps, dtype=np.int64).reshape(shape), "int64")
        bshape = [1] * len(dims)
        bshape[batch_axis] = dims[batch_axis]
        length = op.reshape(op.astype(lengths, "int64"), bshape)
        flipped = op.subtract(op.subtract(length, relax.const(1, "int64")), t)
        index = op.where(op.less(t, length), flipped, t)
        index = op.broadcast_to(index, dims)
        return op.gather_elements(x, index, axis=time_axis)


@register("OneHot")
class OneHot(OnnxOpConverter):
    """One-hot along ``axis``; negative indices count from ``depth``, out-of-range ones give
    an all-off row (TVM's converter rejects non-constant ``values``)."""

    @classmethod
    def _impl_v9(cls, bb, inputs, attr, params):
        indices, values = inputs[0], inputs[2]
        depth = int(np.asarray(constant_value(inputs[1], "OneHot depth")).reshape(-1)[0])
        rank = int(indices.ty.ndim) + 1
        axis = attr.get("axis", -1)
        axis = axis + rank if axis < 0 else axis
        index = op.astype(indices, "int64")
        index = op.where(op.less(index, relax.const(0, "int64")),
                         op.add(index, relax.const(depth, "int64")), index)
        shape = [1] * rank
        shape[axis] = depth
        classes = relax.const(np.arange(depth, dtype=np.int64).reshape(shape), "int64")
        hot = op.equal(op.expand_dims(index, axis), classes)
        off = op.strided_slice(values, [0], [0], [1])
        on = op.strided_slice(values, [0], [1], [2])
        return op.where(hot, op.reshape(on, []), op.reshape(off, []))


def _pairwise(base):
    """Variadic Sum / Max / Min as a chain of broadcasting binary ops (TVM's importer
    broadcasts every input to the full shape, stacks them and reduces over the stack:
    three kernels and two full copies where one fused add does; caffe2 exports write
    every residual add as Sum)."""

    class Pairwise(base):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            if len(inputs) == 1 or all(isinstance(x, tvm.ir.GenericConst) for x in inputs):
                return super()._impl_v1(bb, inputs, attr, params)
            return cls._impl_dynamic(bb, inputs)

    Pairwise.__name__ = base.__name__
    return Pairwise


def _register_pairwise():
    from tvm.relax.frontend.onnx import onnx_frontend

    for name in ("Sum", "Max", "Min"):
        register(name, _pairwise(getattr(onnx_frontend, name)))


_register_pairwise()
