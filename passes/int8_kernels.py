"""The int8 compute kernel behind quantized conv2d and dense: u8 x s8 -> s32, dequantized.

One kernel serves both ops (a dense layer is a 1x1 convolution over a [1, 1, M, K]
NHWC tensor). Activations are uint8 with a zero point (int8, zero point - 128, where the
target multiplies s8 x s8: ARM ``sdot``), weights int8 symmetric per
output channel, packed as ``[OC/16, KH, KW, IC/4, 16, 4]`` so that 16 output
channels x 4 input channels are 64 contiguous bytes: the operand of one AVX-512 VNNI
``vpdpbusd`` (and, with the same blocking, of ARM ``sdot`` / CUDA ``dp4a``). The
computation itself is plain TIR and correct on every target; mcc.schedule.rules.int8
tensorizes it where the target has the instructions.

    xp[n, h, w, c]  = x[n, h - pt, w - pl, c], padded with the zero point zx
                      (channels beyond IC padded with 0, weights there are 0 too)
    acc[n, h, w, o] = sum_{kh, kw, c} int32(xp[...]) * int32(wq[o, kh, kw, c])
    y[n, h, w, o]   = float32(acc + bias32[o]) * scale[o]

with ``bias32[o] = round(bias[o] / scale[o]) - zx * sum(wq[o])`` (the zero-point
correction, exact because the padding holds zx) and ``scale[o] = sx * sw[o]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcc.passes.shapes import ConvGeometry, DepthwiseGeometry, int64_dims

CONV_BLOCK = "mcc_qconv"  # the reduction block the int8 schedule rule looks for
PAD_BLOCK = "mcc_qpad"
DEQUANT_BLOCK = "mcc_qdequant"
OC_BLOCK, IC_BLOCK = 16, 4


@dataclass(frozen=True)
class QConvShape(ConvGeometry):
    """Static geometry of one int8 convolution (NHWC data, OHWI weights)."""

    oc_block, ic_block = OC_BLOCK, IC_BLOCK

    zero_point: int
    x_dtype: str = "uint8"  # "int8" for ARM sdot (mcc.schedule.rules.int8.activation_dtype)

    @property
    def needs_pad_block(self) -> bool:
        """Whether the input is copied into a padded buffer (spatial padding or IC % 4)."""
        return any(self.padding) or self.ic % IC_BLOCK != 0

    def macs(self) -> int:
        oh, ow = self.out_hw
        return self.n * oh * ow * self.oc * self.kh * self.kw * self.ic


def pack_weight(wq: np.ndarray) -> np.ndarray:
    """OHWI int8 weights -> ``[OC/16, KH, KW, IC/4, 16, 4]``, zero-padded."""
    oc, kh, kw, ic = wq.shape
    ocp, icp = -(-oc // OC_BLOCK) * OC_BLOCK, -(-ic // IC_BLOCK) * IC_BLOCK
    padded = np.zeros((ocp, kh, kw, icp), np.int8)
    padded[:oc, :, :, :ic] = wq
    blocked = padded.reshape(ocp // OC_BLOCK, OC_BLOCK, kh, kw, icp // IC_BLOCK, IC_BLOCK)
    return np.ascontiguousarray(blocked.transpose(0, 2, 3, 4, 1, 5))


def qconv2d_func(shape: QConvShape):
    """The kernel as a TIR PrimFunc (x u8, packed w i8, bias i32, scale f32) -> y f32."""
    from tvm import te, tirx

    s = shape

    pt, pl, pb, pr = s.padding
    hp, wp = s.h + pt + pb, s.w + pl + pr
    oh, ow = s.out_hw
    x = te.placeholder(int64_dims(s.n, s.h, s.w, s.ic), s.x_dtype, name="x")
    w = te.placeholder(int64_dims(s.oc_blocks, s.kh, s.kw, s.ic_padded // IC_BLOCK, OC_BLOCK,
                                  IC_BLOCK), "int8", name="w")
    bias = te.placeholder(int64_dims(s.oc), "int32", name="bias")
    scale = te.placeholder(int64_dims(s.oc), "float32", name="scale")

    def padded(n, c_h, c_w, c):
        inside = tirx.all(c_h >= pt, c_h < s.h + pt, c_w >= pl, c_w < s.w + pl)
        value = x[n, tirx.min(tirx.max(c_h - pt, 0), s.h - 1),
                  tirx.min(tirx.max(c_w - pl, 0), s.w - 1), tirx.min(c, s.ic - 1)]
        in_channel = tirx.if_then_else(c < s.ic, value, tirx.const(0, s.x_dtype))
        return tirx.if_then_else(inside, in_channel, tirx.const(s.zero_point, s.x_dtype))

    if s.needs_pad_block:
        xp = te.compute(int64_dims(s.n, hp, wp, s.ic_padded), padded, name=PAD_BLOCK)
    else:  # nothing to pad: the kernel reads the input in place, no copy
        xp = x
    rkh = te.reduce_axis(int64_dims(0, s.kh), "rkh")
    rkw = te.reduce_axis(int64_dims(0, s.kw), "rkw")
    ric = te.reduce_axis(int64_dims(0, s.ic_padded), "ric")
    sh, sw = s.stride
    # over whole 16-channel blocks (the packed weights are zero beyond OC), so that every
    # step is one 16-lane dot product; the dequantising epilogue keeps the first OC
    acc = te.compute(
        int64_dims(s.n, oh, ow, s.oc_blocks * OC_BLOCK),
        lambda n, h, ww, o: te.sum(
            xp[n, h * sh + rkh, ww * sw + rkw, ric].astype("int32")
            * w[o // OC_BLOCK, rkh, rkw, ric // IC_BLOCK, o % OC_BLOCK, ric % IC_BLOCK]
            .astype("int32"),
            axis=[rkh, rkw, ric]),
        name=CONV_BLOCK)
    y = te.compute(int64_dims(s.n, oh, ow, s.oc),
                   lambda n, h, ww, o: (acc[n, h, ww, o] + bias[o]).astype("float32") * scale[o],
                   name=DEQUANT_BLOCK)
    func = te.create_prim_func([x, w, bias, scale, y])
    # a reduction with elementwise epilogues: let FuseOps fuse what follows (bias, relu,
    # the next layer's quantize) into this kernel
    return func.without_attr("global_symbol").with_attr("op_pattern", 4)  # kOutEWiseFusable


DW_BLOCK = "mcc_dwconv"  # the depthwise reduction; scheduled by the fp32 TiledReduction rule


@dataclass(frozen=True)
class DwConvShape(DepthwiseGeometry):
    """A depthwise convolution reading a quantized activation: its zero point pads it."""

    zero_point: int
    x_dtype: str = "uint8"


def dwconv_weights(weight_ohwi: np.ndarray, sx: float, zx: int):
    """fp32 ``[C, KH, KW, 1]`` depthwise weights -> (``[KH, KW, C]`` weights times the input
    scale, the per-channel zero-point correction ``-zx * sx * sum(w[c])``)."""
    w = weight_ohwi[..., 0].transpose(1, 2, 0).astype(np.float64) * sx
    return (np.ascontiguousarray(w.astype(np.float32)),
            (-zx * w.sum(axis=(0, 1))).astype(np.float32))


def dwconv_func(shape: DwConvShape):
    """A depthwise conv that reads 8-bit activations: (xq u8, w f32 [KH, KW, C], corr f32 [C])
    -> y f32, ``y = sum(float(xp) * w) + corr`` with the input padded by its zero point.

    Why not int8 arithmetic: a depthwise conv does 9 multiply-adds per value it reads, so it
    is bound by memory, not arithmetic. Reading the uint8 tensor (the producer's epilogue
    writes it, a quarter of the fp32 bytes) is the gain; the weights stay fp32, so the only
    error is the activation rounding every int8 conv has."""
    from tvm import te, tirx

    s = shape

    pt, pl, pb, pr = s.padding
    oh, ow = s.out_hw
    x = te.placeholder(int64_dims(s.n, s.h, s.w, s.c), s.x_dtype, name="x")
    w = te.placeholder(int64_dims(s.kh, s.kw, s.c), "float32", name="w")
    corr = te.placeholder(int64_dims(s.c), "float32", name="corr")
    if any(s.padding):
        def padded(n, c_h, c_w, c):
            inside = tirx.all(c_h >= pt, c_h < s.h + pt, c_w >= pl, c_w < s.w + pl)
            value = x[n, tirx.min(tirx.max(c_h - pt, 0), s.h - 1),
                      tirx.min(tirx.max(c_w - pl, 0), s.w - 1), c]
            return tirx.if_then_else(inside, value, tirx.const(s.zero_point, s.x_dtype))

        xp = te.compute(int64_dims(s.n, s.h + pt + pb, s.w + pl + pr, s.c), padded, name=PAD_BLOCK)
    else:
        xp = x
    rkh = te.reduce_axis(int64_dims(0, s.kh), "rkh")
    rkw = te.reduce_axis(int64_dims(0, s.kw), "rkw")
    sh, sw = s.stride
    acc = te.compute(
        int64_dims(s.n, oh, ow, s.c),
        lambda n, h, ww, c: te.sum(xp[n, h * sh + rkh, ww * sw + rkw, c].astype("float32")
                                   * w[rkh, rkw, c], axis=[rkh, rkw]),
        name=DW_BLOCK)
    y = te.compute(int64_dims(s.n, oh, ow, s.c), lambda n, h, ww, c: acc[n, h, ww, c] + corr[c],
                   name=DEQUANT_BLOCK)
    func = te.create_prim_func([x, w, corr, y])
    return func.without_attr("global_symbol").with_attr("op_pattern", 4)  # kOutEWiseFusable
