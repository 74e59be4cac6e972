"""Compute a non-overlapping transposed convolution (kernel = stride) as one matmul.

With kernel size equal to the stride and no padding (the 2x2 / stride-2 upsampling of
U-Nets, DBNet text detectors, FPN necks) every input pixel writes its own s x s block of
the output:

    out[n, o, s*i + a, s*j + b] = sum_c x[n, c, i, j] * W[c, o, a, b]

which is a matmul of the pixels [N*H*W, C] by the weight as [C, s*s*O] followed by a
rearrangement of the result. TVM legalizes conv2d_transpose to a loop nest over the
zero-dilated input that no fast schedule takes (1 GFLOP/s: 40% of a DBNet detector's
time); the matmul takes the tiled matmul schedule and the rearrangement fuses with the
bias and activation after it.

Applies to NCHW/IOHW conv2d_transpose (as imported) with a constant weight, kernel equal
to the strides, no padding or output padding, dilation 1 and one group.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from mcc.passes.rewrite import rewrite_matching_calls


def conv_transpose_as_matmul(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each eligible conv2d_transpose computed as a matmul."""
    return ConvTransposeAsMatmul()(mod)


@relax.transform.function_pass(opt_level=0, name="mcc.ConvTransposeAsMatmul")
class ConvTransposeAsMatmul:
    """Function pass form, for use inside a ``tvm.transform.Sequential``."""

    def __init__(self):
        self.pattern = is_op("relax.nn.conv2d_transpose")(wildcard(), is_const())

    def transform_function(self, func, mod, ctx):
        return rewrite_matching_calls(self.pattern, self._rewrite, func)

    @staticmethod
    def _rewrite(call):
        attrs = call.attrs
        data, weight = call.args
        values = weight.value.numpy()  # IOHW: [in channels, out channels, kh, kw]
        strides = [int(s) for s in attrs.strides]
        shape = data.ty.shape
        if (attrs.data_layout != "NCHW" or attrs.kernel_layout != "IOHW"
                or attrs.out_layout not in ("", "NCHW") or int(attrs.groups) != 1
                or values.ndim != 4 or list(values.shape[2:]) != strides
                or any(int(p) for p in attrs.padding)
                or any(int(p) for p in attrs.output_padding)
                or any(int(d) != 1 for d in attrs.dilation)
                or shape is None or not all(isinstance(d, tvm.tirx.IntImm) for d in shape)):
            return call
        n, c, h, w = (int(d) for d in shape)
        out_channels = values.shape[1]
        sh, sw = strides
        # [C, O, sh, sw] -> [C, sh, sw, O] -> [C, sh*sw*O]: each pixel's block, channels last
        matrix = np.ascontiguousarray(values.transpose(0, 2, 3, 1)).reshape(c, -1)
        pixels = relax.op.permute_dims(data, [0, 2, 3, 1])  # [N, H, W, C]
        blocks = relax.op.matmul(pixels, relax.const(matrix), out_dtype=attrs.out_dtype)
        blocks = relax.op.reshape(blocks, [n, h, w, sh, sw, out_channels])
        image = relax.op.permute_dims(blocks, [0, 5, 1, 3, 2, 4])  # [N, O, H, sh, W, sw]
        return relax.op.reshape(image, [n, out_channels, h * sh, w * sw])
