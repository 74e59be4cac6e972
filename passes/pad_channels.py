"""Pad a convolution's output channels, a matmul's columns, to a multiple of the vector width.

    conv2d(x, W[.., O]) = conv2d(x, pad(W)[.., O'])[..., :O]     O' = O rounded up to BLOCK
    matmul(x, W[K, N])  = matmul(x, pad(W)[K, N'])[..., :N]

The CPU conv and matmul schedules vectorise along the output channels / columns and need
their count to split into whole vectors: 257 STFT bins, 1000 classes, 255 detection
outputs or an 8210-character CTC head do not, and such kernels fell to a generic
schedule 5-10x slower. The zero filters cost
``O'/O - 1`` extra work (under 7% for O >= 200) and one slice of the output, which
fuses with the elementwise ops that follow.

Applies to matmuls (a constant 2-D weight is padded at compile time, an activation
operand, e.g. attention's K^T over 197 tokens, by a zero-filled copy at run time) and to
conv2d with a constant weight in NHWC/HWIO (mcc.passes.layout's CPU layout)
whose output channels are not a multiple of ``BLOCK``: always when they are not whole
4-lane vectors (no vectorised schedule at all), otherwise when the padding adds at most
``MAX_WASTE`` (whole 8-lane vectors) or ``MAX_WASTE_QUARTER`` (4-lane only). Grouped
convs are left alone (the padding would have to be per group).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from mcc.passes.rewrite import rewrite_matching_calls

BLOCK = 16  # float32 lanes of AVX-512; a multiple of the NEON / AVX2 widths too
MIN_CHANNELS = 16  # below one block, padding would multiply the work
# Counts of whole 8-lane vectors run (half-width) without padding; they are padded only
# where the zero filters add at most this share of work.
MAX_WASTE = 0.125
# Counts of whole 4-lane vectors only (quarter width on AVX-512) ran about half as fast
# as padded ones (one thread, a 14x14 1x1 conv with 68 -> 68 channels, ShuffleNet's per-group
# convs: 49 us, padded to 80: 23 us), so they are padded up to this share.
MAX_WASTE_QUARTER = 0.5


def pad_channels(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the eligible conv2d's output channels padded to a multiple of BLOCK."""
    return PadChannels()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.PadChannels")
class PadChannels:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def __init__(self):
        weight = is_const()
        self.pattern = (is_op("relax.nn.conv2d")(wildcard(), weight)
                        | is_op("relax.matmul")(wildcard(), wildcard()))

    def transform_function(self, func, mod, ctx):
        return rewrite_matching_calls(self.pattern, self._rewrite, func)

    @staticmethod
    def _rewrite(call):
        data, weight = call.args
        if call.op.name == "relax.matmul":
            return _pad_matmul(call, data, weight)
        if (call.attrs.data_layout != "NHWC" or call.attrs.kernel_layout != "HWIO"
                or call.attrs.out_layout not in ("", "NHWC") or int(call.attrs.groups) != 1):
            return call
        values = weight.value.numpy()
        channels = values.shape[-1]
        padded = _padded(channels, values.dtype)
        if padded is None:
            return call
        values = np.pad(values, [(0, 0)] * 3 + [(0, padded - channels)])
        attrs = call.attrs
        wide = relax.op.nn.conv2d(
            data, relax.const(values), strides=attrs.strides, padding=attrs.padding,
            dilation=attrs.dilation, groups=1, data_layout="NHWC", kernel_layout="HWIO",
            out_layout="NHWC", out_dtype=attrs.out_dtype)
        return relax.op.strided_slice(wide, axes=[-1], begin=[0], end=[channels])


def _padded(channels: int, dtype) -> int | None:
    """The padded count, or None where padding does not pay."""
    padded = -(-channels // BLOCK) * BLOCK
    if padded == channels or channels < MIN_CHANNELS or np.dtype(dtype).kind != "f":
        return None
    if channels % 4 == 0:  # whole vectors of 8 or 4 lanes: pad where it pays
        limit = MAX_WASTE if channels % 8 == 0 else MAX_WASTE_QUARTER
        if padded - channels > limit * channels:
            return None
    return padded


def _pad_matmul(call, data, weight):
    """A constant [K, N] weight padded at compile time; an activation operand (attention's
    K^T of 197 tokens, batched) padded by a zero-filled copy at run time."""
    shape = weight.ty.shape
    if shape is None or not isinstance(shape[-1], tvm.tirx.IntImm) or len(shape) < 2:
        return call
    channels = int(shape[-1])
    padded = _padded(channels, str(weight.ty.dtype))
    if padded is None:
        return call
    if isinstance(weight, tvm.ir.GenericConst):
        values = weight.value.numpy()
        if values.ndim != 2:
            return call
        wide_weight = relax.const(np.pad(values, [(0, 0), (0, padded - channels)]))
    else:
        wide_weight = relax.op.nn.pad(weight, [0, 0] * (len(shape) - 1) + [0, padded - channels])
    wide = relax.op.matmul(data, wide_weight, out_dtype=call.attrs.out_dtype)
    return relax.op.strided_slice(wide, axes=[-1], begin=[0], end=[channels])
