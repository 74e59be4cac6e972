"""Quantize: turn conv2d and dense/matmul into int8 x int8 -> int32 kernels.

Annotate, then realise, on an fp32 ``main`` in NHWC layout, without dataflow blocks
(mcc.driver.quantization prepares it that way):

  annotate  ``find_sites``: every ``conv2d`` (NHWC/OHWI, groups 1 or depthwise, dilation 1) and
            every ``matmul`` by a constant 2-D weight, with static shapes, is a site.
            Sites are named ``conv2d_0``, ``matmul_3``... in graph order; each one that
            cannot be quantized says why.
  realise   ``quantize``: per site, with the activation range from calibration,
                xq = uint8(clip(round(x / sx) + zx, 0, 255))          activation, u8
                wq = int8(clip(round(W / sw[o]), -127, 127))          weights, per channel
                y  = float32(conv_s32(xq, wq) + bias32[o]) * sx*sw[o] (mcc.passes.int8_kernels)
            The dequantising epilogue is part of the kernel, and FuseOps fuses what follows
            (bias, ReLU, residual add, the next site's quantize) into it, so between two
            int8 layers only the uint8 tensor is written to memory.

A depthwise conv (op ``dwconv``) reads the uint8 activation too but keeps fp32 weights and
arithmetic (``int8_kernels.dwconv_func``: it is bound by memory, so the 4x smaller input,
written by the previous conv's epilogue, is the gain).

Activations are asymmetric uint8 (u8 x s8 is what AVX-512 VNNI's vpdpbusd multiplies),
weights symmetric int8 per output channel (``per_tensor=True``: one scale per tensor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from mcc.passes.int8_kernels import (
    DwConvShape,
    QConvShape,
    dwconv_func,
    dwconv_weights,
    pack_weight,
    qconv2d_func,
)
from mcc.passes.shapes import static_shape

QUANTIZABLE_OPS = ("conv2d", "matmul")


@dataclass
class Site:
    """One quantizable op in ``main``: its binding, data input and why it may be skipped."""

    name: str
    op: str
    var: relax.Var
    data: relax.Expr
    call: relax.Call
    skip: str = ""  # why it stays fp32 ("" = quantizable)
    macs: int = 0
    qdq_range: tuple[float, float] | None = None  # from the model's own DequantizeLinear


@dataclass
class QuantizeReport:
    quantized: list[str]
    skipped: dict[str, str]  # site name -> reason

    def to_json(self) -> dict:
        return {"quantized": self.quantized, "fp32": self.skipped}


def _site_for(name_counts: dict, var, call) -> Site | None:
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    op = call.op.name.removeprefix("relax.").removeprefix("nn.")
    if op not in QUANTIZABLE_OPS:
        return None
    index = name_counts.get(op, 0)
    name_counts[op] = index + 1
    site = Site(f"{op}_{index}", op, var, call.args[0], call)
    data_shape, weight = static_shape(call.args[0]), call.args[1]
    if not isinstance(weight, tvm.ir.GenericConst):
        site.skip = "weight is not a constant"
    elif data_shape is None:
        site.skip = "input shape is not static"
    elif call.args[0].ty.dtype != "float32" or weight.value.dtype != "float32":
        site.skip = "not float32"
    elif op == "conv2d":
        attrs = call.attrs
        if attrs.data_layout != "NHWC" or attrs.kernel_layout != "OHWI":
            site.skip = f"layout {attrs.data_layout}/{attrs.kernel_layout}"
        elif int(attrs.groups) != 1 and not _is_depthwise(attrs, weight, data_shape):
            site.skip = f"grouped convolution (groups={int(attrs.groups)})"
        elif any(int(d) != 1 for d in attrs.dilation):
            site.skip = "dilated convolution"
        else:
            oc, kh, kw, ic = weight.value.shape
            out = static_shape(var) or [1, 0, 0, 0]
            site.macs = int(np.prod(out)) * kh * kw * ic
            if int(attrs.groups) != 1:
                site.op = "dwconv"
    elif len(weight.value.shape) != 2 or len(data_shape) < 2:
        site.skip = "not a 2-D weight matmul"
    else:
        k, n = weight.value.shape
        site.macs = int(np.prod(data_shape)) * n
    return site


def _is_depthwise(attrs, weight, data_shape) -> bool:
    """One filter per channel (groups = input channels = output channels, OHWI [C, KH, KW, 1])."""
    shape = weight.value.shape
    return (len(data_shape) == 4 and int(attrs.groups) == int(data_shape[3]) == int(shape[0])
            and int(shape[3]) == 1)


_LOOK_THROUGH = ("relax.permute_dims", "relax.reshape")  # ops that keep every value


def qdq_range(data, bound: dict) -> tuple[float, float] | None:
    """The fp32 range an already-quantized model gives ``data``: where it is (a layout change
    of) ``dequantize(q, scale, zero_point)`` with one scale, the range q can express."""
    expr = bound.get(data, data)
    while isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) \
            and expr.op.name in _LOOK_THROUGH:
        expr = bound.get(expr.args[0], expr.args[0])
    if not (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name == "relax.dequantize"):
        return None
    q, scale, zero_point = expr.args[:3]
    if not (isinstance(scale, tvm.ir.GenericConst) and isinstance(zero_point, tvm.ir.GenericConst)):
        return None
    scale, zero_point = scale.value.numpy().reshape(-1), zero_point.value.numpy().reshape(-1)
    dtype = q.ty.dtype
    if scale.size != 1 or zero_point.size != 1 or dtype not in ("uint8", "int8"):
        return None
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    s, z = float(scale[0]), int(zero_point[0])
    return (qmin - z) * s, (qmax - z) * s


def find_sites(mod: tvm.IRModule) -> list[Site]:
    """Every conv2d / matmul binding of ``main``, in graph order (the annotate step)."""
    sites: list[Site] = []
    counts: dict[str, int] = {}
    bound: dict = {}
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            if isinstance(binding, relax.VarBinding):
                bound[binding.var] = binding.value
                site = _site_for(counts, binding.var, binding.value)
                if site is not None:
                    site.qdq_range = qdq_range(site.data, bound)
                    sites.append(site)
    return sites


def activation_params(low: float, high: float) -> tuple[float, int]:
    """uint8 (scale, zero point) for the range [low, high] (low <= 0 <= high)."""
    scale = (high - low) / 255.0
    zero_point = int(np.clip(round(-low / scale), 0, 255))
    return scale, zero_point


def weight_params(weight: np.ndarray, per_tensor: bool,
                  on_grid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights and their scales, along axis 0 (output channels).

    ``on_grid``: the weights came from an int8 model (W = s * q), so find, per channel, the
    step s that makes every W / s an integer, rather than max|W| / 127.
    """
    flat = np.abs(weight.reshape(weight.shape[0], -1)).astype(np.float64)
    amax = np.full(weight.shape[0], flat.max()) if per_tensor else flat.max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    if on_grid:
        scale = _grid_steps(flat, amax, scale)
    shaped = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    wq = np.clip(np.round(weight / shaped), -127, 127).astype(np.int8)
    return wq, scale


def _grid_steps(flat: np.ndarray, amax: np.ndarray, default: np.ndarray) -> np.ndarray:
    """Per row, the largest k <= 127 with every value / (amax / k) an integer."""
    steps = default.copy()
    found = amax <= 0
    for k in range(127, 0, -1):
        if found.all():
            break
        ratio = flat[~found] * (k / amax[~found, None])
        ok = (np.abs(ratio - np.round(ratio)) < 1e-3).all(axis=1)
        rows = np.flatnonzero(~found)[ok]
        steps[rows] = amax[rows] / k
        found[rows] = True
    return steps


def quantize(mod: tvm.IRModule, ranges: dict[str, tuple[float, float]],
             per_tensor: bool = False, weights_on_grid: bool = False,
             activation_dtype: str = "uint8") -> tuple[tvm.IRModule, QuantizeReport]:
    """Realise every site named in ``ranges`` (site name -> calibrated activation range) as
    an int8 kernel; the other sites stay fp32. ``weights_on_grid``: the model is already
    quantized, keep its weight steps (see ``weight_params``). ``activation_dtype="int8"``
    stores activations as int8 with the zero point shifted by -128 (the same grid: what
    s8 x s8 dot products such as ARM's sdot want)."""
    sites = find_sites(mod)
    chosen = {s.var: s for s in sites if s.name in ranges and not s.skip}
    rewriter = _Realize(mod, chosen, ranges, per_tensor, weights_on_grid, activation_dtype)
    func = rewriter.visit_expr(mod["main"])
    out = rewriter.builder_.get()
    out["main"] = func
    report = QuantizeReport([s.name for s in sites if s.var in chosen],
                            {s.name: s.skip or "excluded" for s in sites if s.var not in chosen})
    return relax.transform.DeadCodeElimination(["main"])(out), report


@relax.expr_functor.mutator
class _Realize(relax.PyExprMutator):
    def __init__(self, mod, chosen, ranges, per_tensor, on_grid, activation_dtype):
        super().__init__(mod)
        self.chosen, self.ranges, self.per_tensor = chosen, ranges, per_tensor
        self.on_grid = on_grid
        self.x_dtype = activation_dtype
        self.shift = 128 if activation_dtype == "int8" else 0  # uint8 grid -> int8 grid
        self.kernels: dict[QConvShape, relax.GlobalVar] = {}
        self.quantized: dict = {}  # (input, scale, zero point) -> its uint8 tensor, made once
        self.bound = {b.var: b.value for block in mod["main"].body.blocks
                      for b in block.bindings if isinstance(b, relax.VarBinding)}
        # fp32 tensors that a site quantizes and other ops read too (ResNet's block outputs:
        # the next convs and the residual add): those readers get the dequantized uint8
        # tensor, so the producer writes uint8 only, its quantize fused in its epilogue
        self.dequantizable: dict = {}  # tensor -> (uint8 tensor, scale, zero point)
        self.dequantized: dict = {}  # tensor -> its dequantized copy, made once
        self.outputs = set()
        relax.analysis.post_order_visit(mod["main"].body.body, self._note_output)
        self.substitute = True

    def _note_output(self, expr):
        if isinstance(expr, relax.Var):
            self.outputs.add(expr)

    def visit_var_(self, var):
        value = super().visit_var_(var)
        if not self.substitute or var in self.outputs or value not in self.dequantizable:
            return value
        if value not in self.dequantized:
            xq, scale, zero_point = self.dequantizable[value]
            op = relax.op
            shifted = op.subtract(op.astype(xq, "float32"),
                                  relax.const(float(zero_point), "float32"))
            self.dequantized[value] = self.builder_.emit(
                op.multiply(shifted, relax.const(scale, "float32")), "dq")
        return self.dequantized[value]

    def visit_var_binding_(self, binding):
        site = self.chosen.get(binding.var)
        if site is None:
            return super().visit_var_binding_(binding)
        self.substitute = False  # a site quantizes the fp32 tensor itself
        data = self.visit_expr(site.data)
        self.substitute = True
        scale, zero_point = activation_params(*self.ranges[site.name])
        zero_point -= self.shift
        if site.op == "conv2d":
            value = self._conv(site, data, scale, zero_point)
        elif site.op == "dwconv":
            value = self._dwconv(site, data, scale, zero_point)
        else:
            value = self._dense(site, data, scale, zero_point)
        self.set_var_remap(binding.var, self.builder_.emit(value, binding.var.name))

    def _quantize_input(self, data, scale: float, zero_point: int, source=None):
        # sites reading the same tensor with the same range (ResNet's downsample branch and
        # the first conv of its block) share one uint8 copy
        key = (data, scale, zero_point)
        if key not in self.quantized:
            pool = self.bound.get(source)
            if _is_max_pool(pool):
                # quantize(max_pool(v)) == max_pool(quantize(v)) (quantize is monotonic): the
                # pool runs on 8-bit data, and the quantize fuses into v's producer
                inner = self._quantize_input(self.visit_expr(pool.args[0]), scale, zero_point)
                value = self.builder_.emit(relax.Call(pool.op, [inner], pool.attrs), "xq")
            else:
                value = self._emit_quantize(data, scale, zero_point)
                if isinstance(self.bound.get(source), relax.Call):  # made by an op
                    self.dequantizable.setdefault(data, (value, scale, zero_point))
            self.quantized[key] = value
        return self.quantized[key]

    def _emit_quantize(self, data, scale: float, zero_point: int):
        op = relax.op
        shifted = op.add(op.round(op.multiply(data, relax.const(1.0 / scale, "float32"))),
                         relax.const(float(zero_point), "float32"))
        clipped = op.clip(shifted, -self.shift, 255 - self.shift)
        return self.builder_.emit(op.astype(clipped, self.x_dtype), "xq")

    def _kernel(self, data_q, weight_ohwi: np.ndarray, shape: QConvShape, sx: float):
        wq, sw = weight_params(weight_ohwi, self.per_tensor, self.on_grid)
        out_scale = (sx * sw).astype(np.float32)
        correction = shape.zero_point * wq.reshape(wq.shape[0], -1).astype(np.int64).sum(axis=1)
        bias32 = (-correction).astype(np.int32)
        gv = self.kernels.get(shape)
        if gv is None:
            gv = self.builder_.add_func(qconv2d_func(shape), "mcc_qconv2d")
            self.kernels[shape] = gv
        oh, ow = shape.out_hw
        out = relax.TensorType([shape.n, oh, ow, shape.oc], "float32")
        args = [data_q, relax.const(pack_weight(wq)), relax.const(bias32),
                relax.const(out_scale)]
        return relax.call_tir(gv, args, out)

    def _conv(self, site, data, sx, zx):
        attrs = site.call.attrs
        n, h, w, ic = static_shape(site.data)
        weight = site.call.args[1].value.numpy()
        oc, kh, kw, _ = weight.shape
        pad = [int(p) for p in attrs.padding]
        stride = tuple(int(s) for s in attrs.strides)
        shape = QConvShape(n, h, w, ic, oc, kh, kw, stride, tuple(pad), zx, self.x_dtype)
        return self._kernel(self._quantize_input(data, sx, zx, site.data), weight, shape, sx)

    def _dwconv(self, site, data, sx, zx):
        attrs = site.call.attrs
        n, h, w, c = static_shape(site.data)
        weight = site.call.args[1].value.numpy()
        shape = DwConvShape(n, h, w, c, weight.shape[1], weight.shape[2],
                            tuple(int(s) for s in attrs.strides),
                            tuple(int(p) for p in attrs.padding), zx, self.x_dtype)
        gv = self.kernels.get(shape)
        if gv is None:
            gv = self.builder_.add_func(dwconv_func(shape), "mcc_dwconv2d")
            self.kernels[shape] = gv
        w_scaled, correction = dwconv_weights(weight, sx, zx)
        oh, ow = shape.out_hw
        args = [self._quantize_input(data, sx, zx, site.data), relax.const(w_scaled),
                relax.const(correction)]
        return relax.call_tir(gv, args, relax.TensorType([n, oh, ow, c], "float32"))

    def _dense(self, site, data, sx, zx):
        dims = static_shape(site.data)
        weight = site.call.args[1].value.numpy()  # [K, N]
        k, n_out = weight.shape
        rows = int(np.prod(dims[:-1]))
        flat = self.builder_.emit(relax.op.reshape(data, [1, 1, rows, k]))
        shape = QConvShape(1, 1, rows, k, n_out, 1, 1, (1, 1), (0, 0, 0, 0), zx, self.x_dtype)
        weight_ohwi = weight.T.reshape(n_out, 1, 1, k)
        y = self.builder_.emit(self._kernel(self._quantize_input(flat, sx, zx), weight_ohwi,
                                            shape, sx))
        return relax.op.reshape(y, [*dims[:-1], n_out])


def _is_max_pool(expr) -> bool:
    return (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name == "relax.nn.max_pool2d")


def has_qdq(mod: tvm.IRModule) -> bool:
    """Whether ``mod`` came from an already-quantized (QDQ / QLinear) model."""
    found = False

    def visit(expr):
        nonlocal found
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            found = found or expr.op.name == "relax.dequantize"

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def has_static_activation_qdq(mod: tvm.IRModule) -> bool:
    """Whether some computed tensor of ``main`` is dequantized with a constant scale and
    zero point (before constant folding: constant arguments, or ones made of constants):
    the only kind of site the "qdq" mode can make int8. Dynamically quantized models
    (DynamicQuantizeLinear: scales computed at run time) have none, and preparing them
    for nothing cost 22 s on an OCR model."""
    constants: set = set()  # bound vars whose value is made of constants only

    def constant(expr) -> bool:
        if isinstance(expr, relax.Var):
            return expr in constants
        return isinstance(expr, tvm.ir.GenericConst) or (
            isinstance(expr, relax.Call) and all(
                constant(a) for a in expr.args if isinstance(a, relax.Expr)))

    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                continue
            value = binding.value
            if constant(value):
                constants.add(binding.var)
            elif (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                    and value.op.name == "relax.dequantize"
                    and constant(value.args[1]) and constant(value.args[2])):
                return True
    return False


def nothing_to_quantize(sites: list[Site]) -> str:
    """The one-line explanation when no site can be quantized."""
    if not sites:
        return "nothing to quantize: the model has no conv2d or matmul/dense ops"
    reasons = "; ".join(f"{s.name}: {s.skip}" for s in sites[:4])
    return f"nothing to quantize: no conv2d or matmul can be made int8 ({reasons})"

