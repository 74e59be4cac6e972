"""Compute a grouped convolution as one ordinary convolution per group.

    conv2d(x, W, groups=g) = concat_j conv2d(x[..., group j channels], W[..., group j], groups=1)

The CPU conv schedule is written for dense convolutions (every output channel reads
every input channel) and depthwise ones; a grouped conv in between (ShuffleNet's 1x1
convs with 3 groups, ResNeXt's 32) matched neither and ran under a generic reduction
schedule at about 1.4 GFLOP/s, 85% of ShuffleNet's time. Split per group, each part is
a dense conv the tiled schedule takes, and the concatenation is one copy of the output.

Runs before the layout conversion (the layout pass leaves grouped convs in NCHW; the
dense parts convert). Applies to conv2d in NCHW/OIHW or NHWC/HWIO with 1 < groups <
input channels (depthwise convs have their own schedule), whose per-group output channel
count fills at least one 4-lane vector, up to ``MAX_GROUPS`` groups.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from mcc.passes.rewrite import rewrite_matching_calls

MAX_GROUPS = 64  # more parts than this: the per-part launches outweigh the gain
MIN_GROUP_CHANNELS = 4


def split_grouped_conv(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each eligible grouped conv2d computed as one conv2d per group."""
    return SplitGroupedConv()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.SplitGroupedConv")
class SplitGroupedConv:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def __init__(self):
        self.pattern = is_op("relax.nn.conv2d")(wildcard(), is_const())

    def transform_function(self, func, mod, ctx):
        return rewrite_matching_calls(self.pattern, self._rewrite, func)

    @staticmethod
    def _rewrite(call):
        attrs = call.attrs
        data, weight = call.args
        groups = int(attrs.groups)
        layouts = (str(attrs.data_layout), str(attrs.kernel_layout),
                   str(attrs.out_layout) or str(attrs.data_layout))
        if layouts not in _AXES or not 1 < groups <= MAX_GROUPS:
            return call
        channel_axis, in_axis, out_axis = _AXES[layouts]
        values = weight.value.numpy()
        in_per_group, out_channels = values.shape[in_axis], values.shape[out_axis]
        if in_per_group == 1 or out_channels % groups:
            return call  # depthwise (or a channel multiplier): its own schedule
        out_per_group = out_channels // groups
        if out_per_group < MIN_GROUP_CHANNELS:
            return call
        parts = relax.op.split(data, groups, axis=channel_axis)
        convs = [relax.op.nn.conv2d(
            relax.TupleGetItem(parts, j),
            relax.const(np.take(values, range(j * out_per_group, (j + 1) * out_per_group),
                                axis=out_axis)),
            strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation, groups=1,
            data_layout=layouts[0], kernel_layout=layouts[1], out_layout=layouts[2],
            out_dtype=attrs.out_dtype) for j in range(groups)]
        return relax.op.concat(convs, axis=channel_axis)


# (data, kernel, out layout) -> (channel axis of data and output, weight's input-channel
# axis, weight's output-channel axis)
_AXES = {
    ("NCHW", "OIHW", "NCHW"): (1, 1, 0),
    ("NHWC", "HWIO", "NHWC"): (3, 2, 3),
}
