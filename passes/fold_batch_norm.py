"""Fold inference-mode batch normalisation into the preceding convolution's weights.

    y = BN(conv(x, W) [+ b])
      = conv(x, W * s) + ((b - mean) * s + beta),   s = gamma / sqrt(var + eps)

computed once at compile time on the constant weights, so the network runs one
convolution and one bias add where it ran a convolution and four elementwise
ops. TVM's own ``FoldBatchnormToConv2D`` misses the common ``conv + bias + BN``
form that ONNX exporters produce; this pass covers both.

Applies to NCHW/OIHW ``conv2d`` whose weights and BN statistics are constants
(run ``FoldConstant`` first so reshaped biases are constants too).

A BN with constant statistics that follows no such conv (DenseNet's and pre-activation
ResNets' BN -> ReLU -> conv) becomes ``x * s + shift`` with both constants computed
here in numpy. Left to ``DecomposeOpsForInference``, each such BN's statistics went
through four ``expand_dims`` and an ``add`` / ``sqrt`` that ``FoldConstant`` evaluates by
compiling one LLVM kernel per op and shape: 11 s of DenseNet-121's compile.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_const, is_op, rewrite_call, wildcard


def fold_batch_norm(mod: tvm.IRModule) -> tvm.IRModule:
    """Return ``mod`` with every foldable conv2d -> [bias add ->] batch_norm folded."""
    return FoldBatchNorm()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.FoldBatchNorm")
class FoldBatchNorm:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def __init__(self):
        self.data, self.weight, self.bias = wildcard(), is_const(), is_const()
        self.conv = is_op("relax.nn.conv2d")(self.data, self.weight)
        self.biased = is_op("relax.add")(self.conv, self.bias)
        self.stats = [is_const() for _ in range(4)]  # gamma, beta, mean, var
        self.bn = is_op("relax.nn.batch_norm")(self.conv | self.biased, *self.stats)
        self.pattern = TupleGetItemPattern(self.bn, 0)
        self.alone_data, self.alone_stats = wildcard(), [is_const() for _ in range(4)]
        self.alone_bn = is_op("relax.nn.batch_norm")(self.alone_data, *self.alone_stats)
        self.alone = TupleGetItemPattern(self.alone_bn, 0)

    def transform_function(self, func, mod, ctx):
        if func.attrs is not None and "Primitive" in func.attrs:
            return func
        func = rewrite_call(self.pattern, self._rewrite, func)
        return rewrite_call(self.alone, self._scale_shift, func)

    def _scale_shift(self, expr, matches):
        """A BN after anything but a foldable conv: ``x * s + shift``, per channel of its axis."""
        bn, data = matches[self.alone_bn], matches[self.alone_data]
        ty = data.ty
        if not isinstance(ty, relax.TensorType) or ty.ndim < 1:
            return expr
        axis = int(bn.attrs.axis) % ty.ndim
        scale, shift = _scale_and_shift(bn, [_array(matches[p]) for p in self.alone_stats])
        if scale.shape != shift.shape:  # statistics of different lengths: not per channel
            return expr
        shape = [1] * ty.ndim
        shape[axis] = scale.size
        dtype = str(ty.dtype)
        return relax.op.add(relax.op.multiply(data, relax.const(scale.reshape(shape), dtype)),
                            relax.const(shift.reshape(shape), dtype))

    def _rewrite(self, expr, matches):
        conv, bn = matches[self.conv], matches[self.bn]
        if (conv.attrs.data_layout != "NCHW" or conv.attrs.kernel_layout != "OIHW"
                or int(bn.attrs.axis) not in (1, -3)):
            return expr
        weight = _array(matches[self.weight])
        channels = weight.shape[0]
        bias = np.zeros(channels)
        if self.bias in matches:
            bias_const = _array(matches[self.bias])
            if bias_const.shape not in ((1, channels, 1, 1), (channels, 1, 1), (), (1,)):
                return expr  # broadcasts along another axis: not a per-channel bias
            bias = np.broadcast_to(bias_const.astype(np.float64).reshape(-1), (channels,))
        scale, shift = _scale_and_shift(bn, [_array(matches[p]) for p in self.stats])
        dtype = weight.dtype
        new_weight = (weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)).astype(dtype)
        new_bias = (bias * scale + shift).astype(dtype).reshape(1, channels, 1, 1)
        folded = relax.Call(conv.op, [matches[self.data], relax.const(new_weight)], conv.attrs)
        return relax.op.add(folded, relax.const(new_bias))


def _scale_and_shift(bn, stats) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN as ``x * scale + shift`` (float64): ``stats`` = gamma, beta, mean, var."""
    gamma, beta, mean, var = (a.astype(np.float64).reshape(-1) for a in stats)
    if not bn.attrs.scale:
        gamma = np.ones_like(gamma)
    if not bn.attrs.center:
        beta = np.zeros_like(beta)
    scale = gamma / np.sqrt(var + float(bn.attrs.epsilon))
    return scale, beta - mean * scale


def _array(constant) -> np.ndarray:
    """The value of a Relax constant as numpy."""
    return constant.value.numpy()
