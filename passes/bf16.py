"""bf16: conv2d and dense/matmul as bf16 x bf16 -> fp32 kernels (``--precision bf16``).

Runs after ``mcc.ConvertLayout`` and before ``mcc.Winograd`` (so bf16 sites are direct
convolutions). Sites, on ``main`` and every other Relax function:

  conv2d   NHWC data, HWIO constant weight, groups 1, dilation 1, float32, static shapes
  matmul   float32 data of static shape times a constant 2-D float32 weight [K, N]; it
           runs as a 1x1 convolution over ``[1, 1, rows, K]`` (as mcc's int8 path does)

Everything else (depthwise / grouped conv, softmax, layer norm, pooling, the attention
matmuls of two activations, elementwise) stays float32.

One kernel (``bconv2d_func``) serves both ops:

    xp[n, h, w, c]  = bf16(x[n, h - pt, w - pl, c]), zero padded (spatial, and IC to even;
                      an odd IC with KW > 1 instead reads each kernel row's KW*IC values
                      as one run of channels, ``folds_taps``)
    acc[n, h, w, o] = sum_{kh, kw, c} f32(xp[...]) * f32(wp[o, kh, kw, c])   (fp32 accumulate)
    y[n, h, w, o]   = acc[n, h, w, o]                                        (o < OC)

bf16 values are stored as ``uint16`` bit patterns: TVM 0.27's default pipeline rewrites
every ``bfloat16`` expression to float32 (BF16ComputeLegalize) and its LLVM codegen has
no native bf16, so the kernel never uses that dtype. bf16 -> fp32 is the exact
``reinterpret(u32(x) << 16)``; fp32 -> bf16 rounds to nearest even. The activation cast
is the kernel's pad block, so the fp32 input is read once. Weights are converted and
packed at compile time into ``[OC/16, KH, KW, IC/2, 16, 2]`` uint16 constants: 16 output
channels x 2 input channels, the operand of one AVX-512 BF16 ``vdpbf16ps`` or four NEON
``bfdot`` (the schedule rule ``mcc.schedule.rules.bf16`` tensorizes it). The kernel is
plain TIR and correct on any target; the output block is op_pattern 4, so FuseOps appends
bias / ReLU / residual. A dense kernel writes the matmul's own ``[..., N]`` shape (no
reshape between it and its bias / activation, which FuseOps would not fuse across).

Handoffs (passes/bf16_handoff.py): an activation that only bf16 kernels (and elementwise
ops, such as a residual add) read is stored as bf16 by its producer's epilogue (the
``mcc_to_bf16`` cast FuseOps fuses there; one ``vcvtneps2bf16`` a vector on AVX-512 BF16,
mcc.build.bf16_convert); the kernels reading it skip their cast (and their pad step
where there is nothing to pad), the elementwise readers widen it back in their prologue
(``mcc_from_bf16``). Half the activation bytes: ResNet-50 47 -> 43 ms on one Zen 5
thread, same cosine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.relax import PyExprMutator, expr_functor

from mcc.passes.bf16_bits import bf16_to_f32, f32_to_bf16, to_bf16_bits
from mcc.passes.bf16_depthwise import (
    DW_BLOCK,
    DW_KERNEL_NAME,
    DwShape,
    depthwise_skip_reason,
    dwconv_func,
)
from mcc.passes.bf16_handoff import ELEMENTWISE, bf16_handoffs
from mcc.passes.rewrite import rewrite_functions
from mcc.passes.shapes import ConvGeometry, int64_dims, static_shape

CONV_BLOCK = "mcc_bconv"  # the reduction block the bf16 schedule rule looks for
PAD_BLOCK = "mcc_bpad"  # pad + fp32 -> bf16 cast
OUT_BLOCK = "mcc_bout"
KERNEL_NAME = "mcc_bf16_conv2d"
FROM_BF16 = "mcc_from_bf16"  # its reader's prologue where an fp32 op reads a handoff
TO_BF16 = "mcc_to_bf16"  # the cast a producer's epilogue ends with where it hands over bf16
REPORT_ATTR = "mcc_bf16_sites"
OC_BLOCK, IC_BLOCK = 16, 2


def folds_taps(ic: int, kw: int) -> bool:
    """Whether a conv reads each kernel row's KW pixels x IC channels as one run of
    KW*IC channels: an odd IC is padded to even per tap (one zero channel in IC + 1; a
    3-channel image stem 36 products a pixel where 27 are needed), a run only once per
    kernel row (30: 17% fewer vdpbf16ps). In NHWC the run is contiguous in the input row,
    so the pad step is a plain copy of the rows, no gather."""
    return ic % IC_BLOCK != 0 and kw > 1


class BConvShape(ConvGeometry):
    """Static geometry of one bf16 convolution (NHWC data, weights OHWI before packing)."""

    oc_block, ic_block = OC_BLOCK, IC_BLOCK

    @property
    def folded(self) -> bool:
        return folds_taps(self.ic, self.kw)


def pack_weight(w_ohwi: np.ndarray) -> np.ndarray:
    """OHWI fp32 -> bf16 bits ``[OC/16, KH, KW, IC/2, 16, 2]`` uint16, zero-padded; a conv
    whose taps fold (``folds_taps``) with KW = 1 and KW*IC channels."""
    oc, kh, kw, ic = w_ohwi.shape
    if folds_taps(ic, kw):
        w_ohwi = w_ohwi.reshape(oc, kh, 1, kw * ic)
        oc, kh, kw, ic = w_ohwi.shape
    ocp, icp = -(-oc // OC_BLOCK) * OC_BLOCK, -(-ic // IC_BLOCK) * IC_BLOCK
    p = np.zeros((ocp, kh, kw, icp), np.uint16)
    p[:oc, :, :, :ic] = to_bf16_bits(w_ohwi)
    blocked = p.reshape(ocp // OC_BLOCK, OC_BLOCK, kh, kw, icp // IC_BLOCK, IC_BLOCK)
    return np.ascontiguousarray(blocked.transpose(0, 2, 3, 4, 1, 5))


def bconv2d_func(shape: BConvShape, bf16_input: bool = False,
                 out_dims: tuple[int, ...] | None = None):
    """The kernel as a TIR PrimFunc: (x f32 NHWC, packed w u16) -> y f32 NHWC.
    ``bf16_input``: x is already bf16 bits (a handoff, passes/bf16_handoff.py); the pad
    step only pads, and is left out where there is nothing to pad. ``out_dims`` (a dense
    layer, whose rows are the output's pixels): y in the matmul's own shape
    ``[..., OC]``, so its bias / activation fuse into this kernel (a reshape between
    the two would stop FuseOps)."""
    from tvm import te, tirx

    s = shape

    pt, pl, pb, pr = s.padding
    hp, wp = s.h + pt + pb, s.w + pl + pr
    x = te.placeholder(int64_dims(s.n, s.h, s.w, s.ic), "uint16" if bf16_input else "float32",
                       name="x")
    if s.folded:
        return _folded_func(s, x, bf16_input, out_dims)

    def padded(n, c_h, c_w, c):
        inside = tirx.all(c_h >= pt, c_h < s.h + pt, c_w >= pl, c_w < s.w + pl, c < s.ic)
        value = x[n, tirx.min(tirx.max(c_h - pt, 0), s.h - 1),
                  tirx.min(tirx.max(c_w - pl, 0), s.w - 1), tirx.min(c, s.ic - 1)]
        return tirx.if_then_else(inside, value if bf16_input else f32_to_bf16(value),
                                 tirx.const(0, "uint16"))

    nothing_to_pad = bf16_input and (hp, wp, s.ic_padded) == (s.h, s.w, s.ic)
    return _conv_func(s, x, None if nothing_to_pad else padded, out_dims)


def _conv_func(s: BConvShape, x, padded, out_dims):
    """The conv of ``bconv2d_func`` over ``x`` padded by the pad step ``padded``
    (n, h, w, c) -> bf16 bits (None: x as it is)."""
    from tvm import te

    pt, pl, pb, pr = s.padding
    hp, wp = s.h + pt + pb, s.w + pl + pr
    oh, ow = s.out_hw
    w = te.placeholder(int64_dims(s.oc_blocks, s.kh, s.kw, s.ic_padded // IC_BLOCK, OC_BLOCK,
                                  IC_BLOCK), "uint16", name="w")
    if padded is None:
        xp = x
    else:
        xp = te.compute(int64_dims(s.n, hp, wp, s.ic_padded), padded, name=PAD_BLOCK)
    rkh = te.reduce_axis(int64_dims(0, s.kh), "rkh")
    rkw = te.reduce_axis(int64_dims(0, s.kw), "rkw")
    ric = te.reduce_axis(int64_dims(0, s.ic_padded), "ric")
    sh, sw = s.stride
    acc = te.compute(
        int64_dims(s.n, oh, ow, s.oc_blocks * OC_BLOCK),
        lambda n, h, ww, o: te.sum(
            bf16_to_f32(xp[n, h * sh + rkh, ww * sw + rkw, ric])
            * bf16_to_f32(w[o // OC_BLOCK, rkh, rkw, ric // IC_BLOCK, o % OC_BLOCK,
                            ric % IC_BLOCK]),
            axis=[rkh, rkw, ric]),
        name=CONV_BLOCK)
    return _output(s, x, w, acc, out_dims)


def _output(s: BConvShape, x, w, acc, out_dims):
    """The kernel's output block (``bconv2d_func``'s ``out_dims``) and its PrimFunc."""
    from tvm import te

    oh, ow = s.out_hw
    if out_dims is None:
        y = te.compute(int64_dims(s.n, oh, ow, s.oc), lambda n, h, ww, o: acc[n, h, ww, o],
                       name=OUT_BLOCK)
    else:  # rows flattened row-major: [d0, d1, ..., OC] -> [1, 1, rows, OC]
        def dense_out(*index):
            row = 0
            for i, d in zip(index[:-1], out_dims[:-1], strict=True):
                row = row * d + i
            return acc[0, 0, row, index[-1]]

        y = te.compute(int64_dims(*out_dims), dense_out, name=OUT_BLOCK)
    func = te.create_prim_func([x, w, y])
    return func.without_attr("global_symbol").with_attr("op_pattern", 4)  # kOutEWiseFusable


def _folded_func(s: BConvShape, x, bf16_input: bool, out_dims):
    """``bconv2d_func`` of a conv whose taps fold (``folds_taps``): the pad step writes
    padded rows of ``(W + PL + PR) * IC`` bf16 values (rounded up to whole vectors, the
    zeros past the end read by the weight's zero channel of an odd run), and output pixel
    w reads channels ``w * SW * IC + j``, j < KW*IC (+1), of KH of them."""
    from tvm import te, tirx

    pt, pl, pb, pr = s.padding
    sh, sw = s.stride
    oh, ow = s.out_hw
    run = -(-(s.kw * s.ic) // IC_BLOCK) * IC_BLOCK
    row = -(-((s.w + pl + pr) * s.ic + run - s.kw * s.ic) // 16) * 16
    w = te.placeholder(int64_dims(s.oc_blocks, s.kh, 1, run // IC_BLOCK, OC_BLOCK, IC_BLOCK),
                       "uint16", name="w")

    def padded(n, c_h, j):
        inside = tirx.all(c_h >= pt, c_h < s.h + pt, j >= pl * s.ic, j < (s.w + pl) * s.ic)
        at = tirx.min(tirx.max(j - pl * s.ic, 0), s.w * s.ic - 1)
        value = x[n, tirx.min(tirx.max(c_h - pt, 0), s.h - 1), at // s.ic, at % s.ic]
        return tirx.if_then_else(inside, value if bf16_input else f32_to_bf16(value),
                                 tirx.const(0, "uint16"))

    xp = te.compute(int64_dims(s.n, s.h + pt + pb, row), padded, name=PAD_BLOCK)
    rkh = te.reduce_axis(int64_dims(0, s.kh), "rkh")
    rkw = te.reduce_axis(int64_dims(0, 1), "rkw")
    ric = te.reduce_axis(int64_dims(0, run), "ric")
    acc = te.compute(
        int64_dims(s.n, oh, ow, s.oc_blocks * OC_BLOCK),
        lambda n, h, ww, o: te.sum(
            bf16_to_f32(xp[n, h * sh + rkh, (ww * sw + rkw) * s.ic + ric])
            * bf16_to_f32(w[o // OC_BLOCK, rkh, rkw, ric // IC_BLOCK, o % OC_BLOCK,
                            ric % IC_BLOCK]),
            axis=[rkh, rkw, ric]),
        name=CONV_BLOCK)
    return _output(s, x, w, acc, out_dims)


def to_bf16_func(dims: tuple[int, ...]):
    """fp32 -> bf16 bits as an elementwise PrimFunc (op_pattern 0): FuseOps puts it in the
    producing kernel's epilogue, which then stores bf16 (a handoff)."""
    from tvm import te, tirx

    x = te.placeholder(tuple(tirx.IntImm("int64", d) for d in dims), "float32", name="x")
    y = te.compute(x.shape, lambda *i: f32_to_bf16(x(*i)), name=TO_BF16)
    func = te.create_prim_func([x, y])
    return func.without_attr("global_symbol").with_attr("op_pattern", 0)  # kElemWise


def from_bf16_func(dims: tuple[int, ...]):
    """bf16 bits -> fp32 (exact) as an elementwise PrimFunc, fused into its reader."""
    from tvm import te, tirx

    x = te.placeholder(tuple(tirx.IntImm("int64", d) for d in dims), "uint16", name="x")
    y = te.compute(x.shape, lambda *i: bf16_to_f32(x(*i)), name=FROM_BF16)
    func = te.create_prim_func([x, y])
    return func.without_attr("global_symbol").with_attr("op_pattern", 0)  # kElemWise


@dataclass
class Bf16Report:
    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # site -> why it stays fp32
    bf16_inputs: list[str] = field(default_factory=list)  # sites fed bf16 by their producer

    def to_json(self) -> dict:
        return {"bf16": list(self.converted), "fp32": dict(self.skipped),
                "bf16_inputs": list(self.bf16_inputs)}


def _op_name(call) -> str | None:
    if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op):
        return call.op.name
    return None


def conv_skip_reason(call) -> str:
    """Why a relax.nn.conv2d cannot be a bf16 site ("" when it can)."""
    attrs = call.attrs
    data, weight = call.args
    if attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO" or (
            attrs.out_layout and attrs.out_layout != "NHWC"):
        return f"layout {attrs.data_layout}/{attrs.kernel_layout}"
    if any(int(d) != 1 for d in attrs.dilation):
        return "dilated convolution"
    if not isinstance(weight, tvm.ir.GenericConst):
        return "weight is not a constant"
    if None in (static_shape(data), static_shape(call)):
        return "shape is not static"
    if not (data.ty.dtype == weight.ty.dtype == call.ty.dtype == "float32"):
        return "not float32"
    if int(attrs.groups) != 1:  # a depthwise conv has its own kernel (bf16_depthwise)
        return depthwise_skip_reason(call, tuple(int(d) for d in weight.value.shape))
    return ""


def is_site(call) -> bool:
    """Whether ``call`` becomes a bf16 kernel."""
    op = _op_name(call)
    if op == "relax.nn.conv2d":
        return not conv_skip_reason(call)
    return op == "relax.matmul" and not matmul_skip_reason(call)


def matmul_skip_reason(call) -> str:
    data, weight = call.args
    if not isinstance(weight, tvm.ir.GenericConst):
        return "weight is not a constant"
    shape = static_shape(data)
    if shape is None or len(shape) < 2:
        return "input shape is not static"
    if len(weight.value.shape) != 2 or int(weight.value.shape[0]) != shape[-1]:
        return "not a 2-D weight matmul"
    if not (data.ty.dtype == weight.ty.dtype == "float32"):
        return "not float32"
    return ""


@expr_functor.mutator
class _Bf16Rewriter(PyExprMutator):
    def __init__(self, mod, report: Bf16Report, handoffs: set):
        super().__init__(mod)
        self.report = report
        self.handoffs = handoffs  # vars stored as bf16 by their producer (bf16_handoff)
        self.kernels: dict[tuple, relax.GlobalVar] = {}
        self.casts: dict[tuple, relax.GlobalVar] = {}
        self.bf16_of: dict = {}  # handoff (original var) -> its bf16 var
        self.counts: dict[str, int] = {}

    def _site(self, op: str, reason: str) -> bool:
        index = self.counts.get(op, 0)
        self.counts[op] = index + 1
        name = f"{op}_{index}"
        if reason:
            self.report.skipped[name] = reason
        else:
            self.report.converted.append(name)
        return not reason

    def visit_call_(self, call):
        handoff = call.args[0] if call.args and call.args[0] in self.handoffs else None
        widened = [i for i, arg in enumerate(call.args) if arg in self.handoffs]
        call = super().visit_call_(call)
        op = _op_name(call)
        if widened and op in ELEMENTWISE:  # a residual add of a handoff: fp32 again
            args = list(call.args)
            for i in widened:
                args[i] = self._from_bf16(self._to_bf16(args[i], call.args[i]))
            return relax.Call(call.op, args, call.attrs)
        if op == "relax.nn.conv2d" and self._site("conv2d", conv_skip_reason(call)):
            return self._conv(call, handoff)
        if op == "relax.matmul" and self._site("matmul", matmul_skip_reason(call)):
            return self._dense(call, handoff)
        return call

    def _cast(self, data, dtype: str):
        dims = static_shape(data)
        gv = self.casts.get((dims, dtype))
        if gv is None:
            make, name = (to_bf16_func, TO_BF16) if dtype == "uint16" else (from_bf16_func,
                                                                            FROM_BF16)
            gv = self.builder_.add_func(make(dims), name)
            self.casts[(dims, dtype)] = gv
        return self.builder_.emit(relax.call_tir(gv, [data], relax.TensorType(dims, dtype)))

    def _to_bf16(self, data, original):
        """``data`` as bf16 bits (a handoff), cast once for all its readers: FuseOps puts
        the cast in the producer's epilogue."""
        if original not in self.bf16_of:
            self.bf16_of[original] = self._cast(data, "uint16")
        return self.bf16_of[original]

    def _from_bf16(self, data):
        """bf16 bits -> fp32 (exact): fused into the reader's kernel."""
        return self._cast(data, "float32")

    def _kernel(self, data, weight_ohwi: np.ndarray, shape: BConvShape, out_dims=None):
        key = (shape, data.ty.dtype == "uint16", out_dims)
        gv = self.kernels.get(key)
        if gv is None:
            gv = self.builder_.add_func(bconv2d_func(*key), KERNEL_NAME)
            self.kernels[key] = gv
        oh, ow = shape.out_hw
        out = relax.TensorType(list(out_dims or (shape.n, oh, ow, shape.oc)), "float32")
        return relax.call_tir(gv, [data, relax.const(pack_weight(weight_ohwi))], out)

    def _conv(self, call, handoff):
        data, weight = call.args
        if handoff is not None:
            self.report.bf16_inputs.append(self.report.converted[-1])
            data = self._to_bf16(data, handoff)
        if int(call.attrs.groups) != 1:
            return self._depthwise(call, data)
        n, h, w, ic = static_shape(data)
        hwio = weight.value.numpy()
        kh, kw, _, oc = hwio.shape
        pad = tuple(int(p) for p in call.attrs.padding)
        if len(pad) == 2:
            pad = pad + pad
        stride = tuple(int(s) for s in call.attrs.strides)
        shape = BConvShape(n, h, w, ic, oc, kh, kw, stride, pad)
        return self._kernel(data, hwio.transpose(3, 0, 1, 2), shape)

    def _depthwise(self, call, data):
        n, h, w, c = static_shape(data)
        weight_hwio = call.args[1].value.numpy()
        kh, kw = weight_hwio.shape[:2]
        pad = tuple(int(p) for p in call.attrs.padding)
        if len(pad) == 2:
            pad = pad + pad
        shape = DwShape(n, h, w, c, kh, kw, tuple(int(s) for s in call.attrs.strides), pad)
        key = ("depthwise", shape, data.ty.dtype == "uint16")
        gv = self.kernels.get(key)
        if gv is None:
            gv = self.builder_.add_func(dwconv_func(shape, key[2]), DW_KERNEL_NAME)
            self.kernels[key] = gv
        oh, ow = shape.out_hw
        weight = relax.const(np.ascontiguousarray(weight_hwio.reshape(kh, kw, c)))
        return relax.call_tir(gv, [data, weight], relax.TensorType([n, oh, ow, c], "float32"))

    def _dense(self, call, handoff):
        data, weight = call.args
        dims = list(static_shape(data))
        if handoff is not None:
            self.report.bf16_inputs.append(self.report.converted[-1])
            data = self._to_bf16(data, handoff)
        kn = weight.value.numpy()
        k, n_out = kn.shape
        rows = int(np.prod(dims[:-1]))
        flat = self.builder_.emit(relax.op.reshape(data, [1, 1, rows, k]))
        shape = BConvShape(1, 1, rows, k, n_out, 1, 1, (1, 1), (0, 0, 0, 0))
        return self._kernel(flat, kn.T.reshape(n_out, 1, 1, k), shape,
                            tuple(dims[:-1]) + (n_out,))


def convert_bf16(mod: tvm.IRModule) -> tuple[tvm.IRModule, Bf16Report]:
    """Rewrite every eligible conv2d / constant-weight matmul as a bf16 kernel."""
    report = Bf16Report()
    handoffs = set()
    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            handoffs |= bf16_handoffs(func, is_site)
    return rewrite_functions(_Bf16Rewriter(mod, report, handoffs), mod), report


@tvm.transform.module_pass(opt_level=0, name="mcc.Bf16")
class Bf16:
    """Module pass form of :func:`convert_bf16`; ``self.report`` holds the last run's sites."""

    def __init__(self):
        self.report = Bf16Report()

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        mod, self.report = convert_bf16(mod)
        # the sites travel with the module (attributes survive the later passes) to the
        # driver, which records them in the metadata (``precision_report``)
        return mod.with_attr(REPORT_ATTR, json.dumps(self.report.to_json()))


def precision_report(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict]:
    """(``mod`` without the pass's site attribute, the metadata entry of a bf16 compile:
    bf16 kernel call sites, the sites converted and those left fp32 with the reason)."""
    sites = {"bf16": [], "fp32": {}}
    if mod.attrs is not None and REPORT_ATTR in mod.attrs:
        sites = json.loads(str(mod.attrs[REPORT_ATTR]))
        mod = mod.without_attr(REPORT_ATTR)
    return mod, {"mode": "bf16", "bf16_kernels": count_bf16_kernels(mod),
                 "bf16_ops": sites["bf16"], "fp32_ops": sites["fp32"]}


def is_bf16_kernel(func) -> bool:
    """Whether a PrimFunc holds one of mcc's bf16 kernels (conv / dense or depthwise)."""
    script = func.script()
    return f'"{CONV_BLOCK}' in script or f'"{DW_BLOCK}' in script


def bf16_kernel_funcs(mod: tvm.IRModule) -> set[str]:
    """Names of the PrimFuncs in ``mod`` that hold a bf16 kernel (fused or not)."""
    from tvm import tirx

    found = set()
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and is_bf16_kernel(func):
            found.add(gv.name_hint)
    return found


def count_bf16_kernels(mod: tvm.IRModule) -> int:
    """Call sites of bf16 kernels in the module's Relax functions."""
    names = bf16_kernel_funcs(mod)
    count = 0

    def visit(expr):
        nonlocal count
        if (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
                and expr.op.name == "relax.call_tir" and expr.args[0].name_hint in names):
            count += 1

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return count
