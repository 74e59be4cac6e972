"""Compute 1-D convolutions as 2-D convolutions of height 1.

    conv1d(x[N,C,W], w[O,I,K]) = squeeze(conv2d(x[N,C,1,W], w[O,I,1,K]), axis=2)

Audio models are built from conv1d: STFTs written as a strided conv with hundreds of
filters, wav2vec2's and Whisper's feature encoders, Silero's front end. TVM legalizes
conv1d to a plain loop nest that no fast schedule recognises (2 GFLOP/s on an STFT
conv); as a conv2d it takes the layout conversion and the register-tiled conv schedule
every image model gets. The weight's extra axis is folded at compile time.

Applies to conv1d in NCW/OIW layout (what the ONNX and torch importers produce), any
stride, padding, dilation and groups.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from mcc.passes.rewrite import rewrite_matching_calls


def conv1d_as_conv2d(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every NCW/OIW conv1d computed as a height-1 conv2d."""
    return Conv1dAsConv2d()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.Conv1dAsConv2d")
class Conv1dAsConv2d:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def __init__(self):
        self.pattern = is_op("relax.nn.conv1d")(wildcard(), wildcard())

    def transform_function(self, func, mod, ctx):
        return rewrite_matching_calls(self.pattern, self._rewrite, func)

    @staticmethod
    def _rewrite(call):
        attrs = call.attrs
        if (attrs.data_layout != "NCW" or attrs.kernel_layout != "OIW"
                or attrs.out_layout != "NCW"):
            return call
        data, weight = call.args
        left, right = (int(p) for p in attrs.padding)
        if isinstance(weight, tvm.ir.GenericConst):  # a constant for the passes that follow
            weight = relax.const(weight.value.numpy()[:, :, None, :])
        else:
            weight = relax.op.expand_dims(weight, 2)
        conv = relax.op.nn.conv2d(
            relax.op.expand_dims(data, 2), weight,
            strides=(1, int(attrs.strides[0])), padding=(0, left, 0, right),
            dilation=(1, int(attrs.dilation[0])), groups=int(attrs.groups),
            data_layout="NCHW", kernel_layout="OIHW", out_dtype=attrs.out_dtype)
        return relax.op.squeeze(conv, axis=[2])
