"""Winograd convolution: 3x3 stride-1 convolutions with a third to a half of the multiplies.

A 3x3 convolution computed tile by tile as F(m x m, 3 x 3) (Lavin & Gray, 2016) needs
``(m + 2)^2`` multiplies per tile of ``m x m`` outputs instead of ``9 m^2``. On this CPU
family the direct kernels already run near the FMA peak, so fewer multiplies is the
lever left: one tuned ResNet-50 stage-3 convolution took 1,054 us direct and 773 us as
F(4x4, 3x3) (cold, the same 256 trials each).

Each eligible ``relax.nn.conv2d`` (NHWC data, HWIO constant weight, float32, 3x3, stride
1, no dilation or groups, static shape, 64+ channels in and out, output map 12x12 or
larger) becomes three kernels:

    V = input_transform(data)       (alpha^2, tiles, C_in)    B^T d B per tile
    M = matmul(V, U)                (alpha^2, tiles, C_out)   U = G g G^T, built here in numpy
    y = output_transform(M)         (N, H, W, C_out)          A^T M A, in the output layout

so each is a kernel mcc's default rules and MetaSchedule already know: the two transforms
are window reductions along contiguous channels (like pooling), the middle one a batched
matmul; a bias, ReLU or residual add after the convolution fuses into the output transform.
The weights grow by ``alpha^2 / 9`` (4x for m = 4), hence ``max_weight_mib``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.relax import PyExprMutator, expr_functor
from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

from mcc.passes.rewrite import rewrite_functions
from mcc.passes.shapes import static_shape

KERNEL = 3
MAX_WEIGHT_MIB = 16.0  # transformed weights of one conv; above this the matmul is memory-bound
# fewer channels in or out: the three kernels cost more than the multiplies they save. Under
# mcc's rules (benchmarks/winograd.py) Winograd took 0.77x the direct time at 56x56 x 64
# channels, but 2.3x at 56x56 x 32 and 5.6x at 32x32 x 16
MIN_CHANNELS = 64


def transform_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, G) of F(m x m, 3 x 3), in float64: A is alpha x m, B alpha x alpha, G alpha x 3
    (TOPI's own construction, through its private helpers)."""
    points = _interpolation_points(m + KERNEL - 2)
    return _cook_toom_convolution(points, m, KERNEL)


def transform_weight(weight_hwio: np.ndarray, m: int) -> np.ndarray:
    """U[e * alpha + n, ci, co] = (G g G^T)[e, n] for each (ci, co), done once at compile time."""
    _, _, G = transform_matrices(m)
    u = np.einsum("ek,klio,nl->enio", G, weight_hwio.astype(np.float64), G)
    alpha = m + KERNEL - 1
    return u.reshape(alpha * alpha, *weight_hwio.shape[2:]).astype(weight_hwio.dtype)


def tile_size(out_h: int, out_w: int) -> int | None:
    """F(4x4) where the output map holds 12 x 12 pixels or more (14x14 computes 16x16); None
    on smaller maps, where too few tiles share each transformed weight: ResNet-50's 7x7,
    512-channel conv as F(2x2) took 1,109 us tuned (128 trials, cold), no faster than the
    direct kernel of the same work at 14x14 (1,054 us), for 16/9 the weight bytes."""
    return 4 if min(out_h, out_w) >= 12 else None


def input_transform(data: te.Tensor, b_mat: te.Tensor, m: int, pad: tuple[int, int, int, int]
                    ) -> te.Tensor:
    """V[e * alpha + n, p, c] = sum_ab tile_p[a, b, c] B[a, e] B[b, n] over tiles p of the
    padded input (alpha x alpha windows every m pixels). ``b_mat`` is B as a constant input:
    loaded, it beats TOPI's ``const_matrix`` select chains (0.78 against 0.83 ms for a
    56x56x64 conv under mcc's rules)."""
    n_img, h, w, c = (int(x) for x in data.shape)
    pad_t, pad_l, pad_b, pad_r = pad
    alpha = m + KERNEL - 1
    out_h, out_w = h + pad_t + pad_b - KERNEL + 1, w + pad_l + pad_r - KERNEL + 1
    n_h, n_w = -(-out_h // m), -(-out_w // m)
    extra_h = (n_h - 1) * m + alpha - (h + pad_t + pad_b)
    extra_w = (n_w - 1) * m + alpha - (w + pad_l + pad_r)
    padded = topi.nn.pad(data, (0, pad_t, pad_l, 0), (0, pad_b + extra_h, pad_r + extra_w, 0),
                         name="winograd_pad")
    ra, rb = te.reduce_axis((0, alpha), "ra"), te.reduce_axis((0, alpha), "rb")

    def pixel(p, a, b, ch):
        img, rest = p // (n_h * n_w), p % (n_h * n_w)
        return padded[img, (rest // n_w) * m + a, (rest % n_w) * m + b, ch]

    return te.compute(
        (alpha * alpha, n_img * n_h * n_w, c),
        lambda en, p, ch: te.sum(pixel(p, ra, rb, ch) * b_mat[ra, en // alpha]
                                 * b_mat[rb, en % alpha], axis=[ra, rb]),
        name="winograd_input_transform")


def output_transform(prod: te.Tensor, a_mat: te.Tensor, m: int,
                     out_shape: tuple[int, int, int, int]) -> te.Tensor:
    """y[n, h, w, co] = sum_ab M[a * alpha + b, tile(n, h, w), co] A[a, h % m] A[b, w % m]."""
    n_img, out_h, out_w, c_out = out_shape
    alpha = m + KERNEL - 1
    n_h, n_w = -(-out_h // m), -(-out_w // m)
    ra, rb = te.reduce_axis((0, alpha), "ra"), te.reduce_axis((0, alpha), "rb")
    return te.compute(
        out_shape,
        lambda n, h, w, co: te.sum(
            prod[ra * alpha + rb, n * n_h * n_w + (h // m) * n_w + w // m, co]
            * a_mat[ra, h % m] * a_mat[rb, w % m], axis=[ra, rb]),
        name="winograd_output_transform")


def eligible(call: relax.Call, max_weight_mib: float = MAX_WEIGHT_MIB) -> int | None:
    """The tile size to rewrite ``call`` with, or None when it is not a conv this pass handles."""
    if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d"):
        return None
    attrs = call.attrs
    data, weight = call.args
    if (attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO"
            or attrs.out_layout != "NHWC" or int(attrs.groups) != 1
            or [int(s) for s in attrs.strides] != [1, 1]
            or [int(d) for d in attrs.dilation] != [1, 1]
            or not isinstance(weight, tvm.ir.GenericConst)):
        return None
    data_shape, weight_shape, out_shape = (static_shape(e) for e in (data, weight, call))
    if None in (data_shape, weight_shape, out_shape) or weight_shape[:2] != (KERNEL, KERNEL):
        return None
    if min(weight_shape[2:]) < MIN_CHANNELS:
        return None
    if not (data.ty.dtype == weight.ty.dtype == call.ty.dtype == "float32"):
        return None
    m = tile_size(out_shape[1], out_shape[2])
    if m is None:
        return None
    weight_mib = (m + 2) ** 2 * weight_shape[2] * weight_shape[3] * 4 / 2**20
    return m if weight_mib <= max_weight_mib else None


@expr_functor.mutator
class _WinogradRewriter(PyExprMutator):
    def __init__(self, mod, max_weight_mib):
        super().__init__(mod)
        self.max_weight_mib = max_weight_mib

    def visit_call_(self, call):
        call = super().visit_call_(call)
        m = eligible(call, self.max_weight_mib)
        if m is None:
            return call
        bb = self.builder_
        data, weight = call.args
        pad = tuple(int(p) for p in call.attrs.padding)
        u = transform_weight(weight.value.numpy(), m)
        a_mat, b_mat, _ = (relax.const(x.astype("float32")) for x in transform_matrices(m))
        v = bb.emit(bb.call_te(input_transform, data, b_mat, m, pad,
                               primfunc_name_hint="winograd_input_transform"))
        prod = bb.emit(relax.op.matmul(v, relax.const(u)))
        return bb.call_te(output_transform, prod, a_mat, m, static_shape(call),
                          primfunc_name_hint="winograd_output_transform")


def winograd(mod: tvm.IRModule, max_weight_mib: float = MAX_WEIGHT_MIB) -> tvm.IRModule:
    """Rewrite eligible 3x3 stride-1 convolutions as Winograd F(m x m, 3 x 3)."""
    return Winograd(max_weight_mib)(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.Winograd")
class Winograd:
    """Module pass form of :func:`winograd`."""

    def __init__(self, max_weight_mib: float = MAX_WEIGHT_MIB):
        self.max_weight_mib = max_weight_mib

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return rewrite_functions(_WinogradRewriter(mod, self.max_weight_mib), mod)
