"""bf16-input depthwise convolution for ``--precision bf16`` (mcc.passes.bf16).

A depthwise conv reads the expand conv's wide output and writes the project conv's
input: in a bf16 model both are bf16 handoffs (passes/bf16_handoff.py) when the
depthwise conv takes bf16 too, which halves the bytes of the largest activations of an
inverted-residual network. The arithmetic stays fp32 (weights fp32, bf16 input widened
exactly, fp32 accumulate): a depthwise conv has one multiply-add per input value, so it
is bound by memory, not by the multiplies that ``vdpbf16ps`` would speed up.

    xp[n, h, w, c] = x[n, h - pt, w - pl, c] as bf16 (zero padded; cast from fp32 when
                     the input is not a handoff)
    y[n, h, w, c]  = sum_{kh, kw} f32(xp[n, h*sh + kh, w*sw + kw, c]) * w[kh, kw, c]

Sites: NHWC data, HWIO constant weight ``[KH, KW, 1, C]``, groups = C = OC with C a
multiple of 16 (one vector), dilation 1, float32, static shapes.
"""

from __future__ import annotations

from mcc.passes.shapes import DepthwiseGeometry, int64_dims

DW_BLOCK = "mcc_bdwconv"  # the reduction block the bf16 schedule rule looks for
DW_PAD_BLOCK = "mcc_bdwpad"
DW_OUT_BLOCK = "mcc_bdwout"
DW_KERNEL_NAME = "mcc_bf16_dwconv2d"
LANES = 16


DwShape = DepthwiseGeometry  # the bf16 kernel needs nothing more than the geometry


def depthwise_skip_reason(call, weight_shape) -> str:
    """Why a grouped relax.nn.conv2d is not a bf16 depthwise site ("" when it is)."""
    attrs = call.attrs
    kh, kw, per_group, oc = weight_shape
    if int(attrs.groups) != oc or per_group != 1:
        return f"grouped convolution (groups={int(attrs.groups)})"
    if oc % LANES:
        return f"depthwise convolution with {oc} channels (not a multiple of {LANES})"
    return ""


def dwconv_func(shape: DwShape, bf16_input: bool):
    """The kernel as a TIR PrimFunc: (x u16 or f32 NHWC, w f32 [KH, KW, C]) -> y f32."""
    from tvm import te, tirx

    from mcc.passes.bf16_bits import bf16_to_f32, f32_to_bf16

    s = shape

    pt, pl, pb, pr = s.padding
    oh, ow = s.out_hw
    x = te.placeholder(int64_dims(s.n, s.h, s.w, s.c), "uint16" if bf16_input else "float32",
                       name="x")
    w = te.placeholder(int64_dims(s.kh, s.kw, s.c), "float32", name="w")

    def padded(n, c_h, c_w, c):
        inside = tirx.all(c_h >= pt, c_h < s.h + pt, c_w >= pl, c_w < s.w + pl)
        value = x[n, tirx.min(tirx.max(c_h - pt, 0), s.h - 1),
                  tirx.min(tirx.max(c_w - pl, 0), s.w - 1), c]
        return tirx.if_then_else(inside, value if bf16_input else f32_to_bf16(value),
                                 tirx.const(0, "uint16"))

    xp = te.compute(int64_dims(s.n, s.h + pt + pb, s.w + pl + pr, s.c), padded, name=DW_PAD_BLOCK)
    rkh = te.reduce_axis(int64_dims(0, s.kh), "rkh")
    rkw = te.reduce_axis(int64_dims(0, s.kw), "rkw")
    sh, sw = s.stride
    acc = te.compute(
        int64_dims(s.n, oh, ow, s.c),
        lambda n, h, ww, c: te.sum(
            bf16_to_f32(xp[n, h * sh + rkh, ww * sw + rkw, c]) * w[rkh, rkw, c],
            axis=[rkh, rkw]),
        name=DW_BLOCK)
    y = te.compute(int64_dims(s.n, oh, ow, s.c), lambda *i: acc(*i), name=DW_OUT_BLOCK)
    func = te.create_prim_func([x, w, y])
    return func.without_attr("global_symbol").with_attr("op_pattern", 4)  # kOutEWiseFusable
