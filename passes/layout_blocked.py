"""Blocked channel layout (NCHW[x]c): the x86 layout of oneDNN and of TVM's old x86 schedules.

Activations become ``(N, C / b, H, W, b)`` and conv weights ``(O / bo, I / bi, KH, KW, bi, bo)``
("OIHW[bi]i[bo]o"), with ``b`` the target's SIMD width in elements (16 fp32 on AVX-512,
8 on AVX2, 4 on NEON). Every conv then computes one SIMD register of output channels
per FMA on a contiguous weight vector, and pooling / elementwise ops vectorise on the
same inner block; unlike NHWC, a tile of one channel block is contiguous in memory.

Relax's ``ConvertLayout`` accepts "NCHW16c" but refuses depthwise and grouped convs
(their weight's I axis does not divide by 16) and ``LegalizeOps`` refuses every blocked
conv, so this pass does the conversion itself:

  1. each float NCHW conv2d (plain, grouped, depthwise) becomes a blocked conv kernel
     (a TE compute, lowered here), its constant weight packed now, in numpy;
  2. ops reading a blocked tensor stay blocked where they can: elementwise and
     broadcast ops (bias adds, batch-norm leftovers, activations, residual adds; a
     per-channel constant is blocked in numpy), max / avg / global pooling, channel
     means, concat along channels;
  3. each converted op is written as ``unblock(op(block(args)))``; the next converted
     op reads the blocked value directly, so after common-subexpression and dead-code
     elimination only the model's entry (block the input) and exit (unblock the
     output) transforms remain, plus one pair around each op that cannot be blocked.

The block of a tensor depends only on its channel count (``block_size``), so every op
that meets two tensors of the same width (a residual add) finds them blocked alike.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx

from mcc.passes.rewrite import rewrite_functions
from mcc.passes.shapes import static_shape

CONV_KERNELS = ("conv2d_nchwc", "depthwise_conv2d_nchwc")  # the PrimFunc names this pass emits

_UNARY = {"relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.silu",
          "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.exp", "relax.negative", "relax.sqrt",
          "relax.rsqrt", "relax.abs", "relax.nn.leakyrelu", "relax.nn.relu6", "relax.erf",
          "relax.square", "relax.isnan", "relax.log"}
_BINARY = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
           "relax.minimum", "relax.power"}
_POOLS = {"relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d"}
_REDUCE = {"relax.mean", "relax.sum", "relax.max"}


def block_size(channels: int, lanes: int) -> int | None:
    """Channels per block: all of them up to one register, else the largest power of two
    up to ``lanes`` that divides them (None below 4: a layout that cannot vectorise)."""
    if channels <= lanes:
        return channels
    b = lanes
    while b >= 4 and channels % b:
        b //= 2
    return b if b >= 4 else None


def to_blocked_layout(mod: tvm.IRModule, lanes: int) -> tvm.IRModule:
    """Return ``mod`` with its convolutions and their neighbours in NCHW[b]c (see module doc)."""
    mod = rewrite_functions(_Blocker(mod, lanes), mod)
    T = relax.transform
    mod = T.EliminateCommonSubexpr()(mod)  # one block(x) for every reader of x
    return T.DeadCodeElimination()(mod)  # unblock(y) that nothing reads any more


# -- layout transforms ----------------------------------------------------------------------

def _block(x: relax.Expr, b: int) -> relax.Expr:
    """(N, C, H, W) -> (N, C / b, H, W, b)."""
    return relax.op.layout_transform(x, index_map=lambda n, c, h, w: (n, c // b, h, w, c % b))


def _unblock(y: relax.Expr) -> relax.Expr:
    """(N, C / b, H, W, b) -> (N, C, H, W)."""
    b = int(y.ty.shape[4])
    return relax.op.layout_transform(y, index_map=lambda n, co, h, w, ci: (n, co * b + ci, h, w))


def _block_np(a: np.ndarray, b: int) -> np.ndarray:
    n, c, h, w = a.shape
    return np.ascontiguousarray(a.reshape(n, c // b, b, h, w).transpose(0, 1, 3, 4, 2))


def _is_float(expr) -> bool:
    return isinstance(expr.ty, relax.TensorType) and str(expr.ty.dtype).startswith("float")


# -- the rewrite ----------------------------------------------------------------------------

@relax.expr_functor.mutator
class _Blocker(relax.PyExprMutator):
    def __init__(self, mod, lanes: int):
        super().__init__(mod)
        self.lanes = lanes

    def visit_call_(self, call):
        call = super().visit_call_(call)
        op = call.op.name if isinstance(call.op, tvm.ir.Op) else ""
        try:
            if op == "relax.nn.conv2d":
                blocked = self._conv2d(call)
            elif op in _UNARY or op in _BINARY:
                blocked = self._elementwise(call)
            elif op in _POOLS:
                blocked = self._pool(call)
            elif op in _REDUCE:
                blocked = self._reduce(call)
            elif op == "relax.concat":
                blocked = self._concat(call)
            else:
                blocked = None
        except _NotBlockable:
            blocked = None
        if blocked is None:
            return call
        return _unblock(self.builder_.emit(blocked))

    # what the converted ops read

    def _blocked_of(self, expr) -> relax.Expr | None:
        """The blocked value ``expr`` was unblocked from, if a converted op produced it."""
        if not isinstance(expr, relax.Var):
            return None
        value = self.lookup_binding(expr)
        if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)
                and value.op.name == "relax.layout_transform"
                and _is_unblock(value)):
            return value.args[0]
        return None

    def _as_blocked(self, expr, shape: list[int]) -> relax.Expr:
        """``expr`` (an NCHW tensor, or a broadcast operand of one of shape ``shape``) blocked."""
        found = self._blocked_of(expr)
        if found is not None:
            return found
        b = block_size(shape[1], self.lanes)
        own = static_shape(expr)
        if b is None or own is None:
            raise _NotBlockable
        if len(own) == 0:
            return expr  # a scalar broadcasts in any layout
        if len(own) > 4:
            raise _NotBlockable
        full = [1] * (4 - len(own)) + list(own)  # numpy broadcasting aligns on the right
        if full[1] not in (1, shape[1]) or any(d not in (1, s) for d, s in zip(full, shape)):
            raise _NotBlockable
        if isinstance(expr, tvm.ir.expr.Constant):
            data = expr.value.numpy().reshape(full)
            data = _block_np(data, b) if full[1] == shape[1] else data[..., None]
            return relax.const(data, str(expr.ty.dtype))
        if full[1] == 1:  # channel-broadcast: (N, 1, H, W, 1) is a reshape
            return relax.op.reshape(expr, [*full, 1])
        if full != list(own):
            expr = relax.op.reshape(expr, full)
        return self.builder_.emit(_block(expr, b))

    def _any_blocked(self, args) -> bool:
        return any(self._blocked_of(a) is not None for a in args)

    # the converted ops

    def _conv2d(self, call):
        a = call.attrs
        if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
            return None
        data, weight = call.args
        ds, ws, os_ = static_shape(data), static_shape(weight), static_shape(call)
        if ds is None or ws is None or os_ is None or not _is_float(data):
            return None
        if a.out_dtype and str(a.out_dtype) not in ("", "void", str(data.ty.dtype)):
            return None
        groups, cin, cout = int(a.groups), ds[1], os_[1]
        bi, bo = block_size(cin, self.lanes), block_size(cout, self.lanes)
        if bi is None or bo is None:
            return None
        depthwise = groups == cin == cout and groups > 1
        if depthwise:
            if bi != bo:
                return None
        elif (cout // groups) % bo:
            return None  # an output block would straddle two groups: lanes read other inputs
        x = self._as_blocked(data, ds)
        # the weight's input block: the data's, or a whole group's inputs where several
        # groups share one data block
        wbi = bi if (cin // groups) % bi == 0 else cin // groups
        if isinstance(weight, tvm.ir.expr.Constant):
            w = relax.const(_pack_weight(weight.value.numpy(), wbi, bo, depthwise),
                            str(weight.ty.dtype))
        else:
            w = self.builder_.emit(_pack_weight_expr(weight, wbi, bo, depthwise))
        params = dict(strides=[int(s) for s in a.strides], padding=[int(p) for p in a.padding],
                      dilation=[int(d) for d in a.dilation], groups=groups)
        if depthwise:
            return self.builder_.call_te(_depthwise_te, x, w, **params,
                                         primfunc_name_hint="depthwise_conv2d_nchwc")
        return self.builder_.call_te(_conv2d_te, x, w, **params, cout=cout,
                                     primfunc_name_hint="conv2d_nchwc")

    def _elementwise(self, call):
        args = list(call.args)
        tensors = [x for x in args if isinstance(x.ty, relax.TensorType)]
        if not self._any_blocked(tensors) or not all(_is_float(x) for x in tensors):
            return None
        shape = static_shape(call)
        if shape is None or len(shape) != 4:
            return None
        # scalar attributes passed as values (clip's bounds) stay as they are
        new_args = [self._as_blocked(x, shape) if isinstance(x.ty, relax.TensorType) else x
                    for x in args]
        return relax.Call(call.op, new_args, call.attrs)

    def _pool(self, call):
        x = call.args[0]
        blocked = self._blocked_of(x)
        if blocked is None or call.attrs.layout != "NCHW" or call.attrs.out_layout != "NCHW":
            return None
        layout = f"NCHW{int(blocked.ty.shape[4])}c"
        a = call.attrs
        if call.op.name == "relax.nn.adaptive_avg_pool2d":
            size = None if a.output_size is None else [int(s) for s in a.output_size]
            return relax.op.nn.adaptive_avg_pool2d(blocked, size, layout=layout)
        fn = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" else \
            relax.op.nn.avg_pool2d
        kwargs = dict(pool_size=[int(s) for s in a.pool_size], strides=[int(s) for s in a.strides],
                      padding=[int(p) for p in a.padding], dilation=[int(d) for d in a.dilation],
                      ceil_mode=bool(a.ceil_mode), layout=layout)
        if call.op.name == "relax.nn.avg_pool2d":
            kwargs["count_include_pad"] = bool(a.count_include_pad)
        return fn(blocked, **kwargs)

    def _reduce(self, call):
        """mean / sum / max over H and W (global pooling as ONNX imports it), kept dims."""
        blocked = self._blocked_of(call.args[0])
        axes = call.attrs.axis
        if blocked is None or axes is None or not call.attrs.keepdims:
            return None
        if sorted(int(x) % 4 for x in axes) != [2, 3]:
            return None
        fn = {"relax.mean": relax.op.mean, "relax.sum": relax.op.sum,
              "relax.max": relax.op.max}[call.op.name]
        return fn(blocked, axis=[2, 3], keepdims=True)

    def _concat(self, call):
        (fields,) = call.args
        if int(call.attrs.axis) % 4 != 1 or not isinstance(fields, relax.Tuple):
            return None
        shape = static_shape(call)
        if shape is None or len(shape) != 4 or not self._any_blocked(fields.fields):
            return None
        b = block_size(shape[1], self.lanes)
        parts = []
        for f in fields.fields:
            fs = static_shape(f)
            if fs is None or block_size(fs[1], self.lanes) != b or fs[1] % b:
                return None  # blocks would not line up in the concatenated tensor
            parts.append(self._as_blocked(f, fs))
        return relax.op.concat(parts, axis=1)


class _NotBlockable(Exception):
    """An operand has no blocked form (symbolic shape, odd broadcast): keep the op NCHW."""


def _is_unblock(call) -> bool:
    """A 5-D -> 4-D layout transform of the form this pass writes."""
    src = static_shape(call.args[0])
    dst = static_shape(call)
    if src is None or dst is None or len(src) != 5 or len(dst) != 4:
        return False
    index_map = call.attrs.index_map
    n, co, h, w, ci = (tirx.Var(name, "int64") for name in ("n", "co", "h", "w", "ci"))
    got = index_map.map_indices([n, co, h, w, ci])
    want = [n, co * src[4] + ci, h, w]
    analyzer = tvm.sym.Analyzer()
    return len(got) == 4 and all(analyzer.can_prove_equal(g, x) for g, x in zip(got, want))


# -- packed weights -------------------------------------------------------------------------

def _pack_weight(w: np.ndarray, bi: int, bo: int, depthwise: bool) -> np.ndarray:
    """OIHW -> (O/bo, I/bi, KH, KW, bi, bo); depthwise (C, 1, KH, KW) -> (C/b, KH, KW, b)."""
    o, i, kh, kw = w.shape
    if depthwise:
        return np.ascontiguousarray(w.reshape(o // bo, bo, kh, kw).transpose(0, 2, 3, 1))
    return np.ascontiguousarray(
        w.reshape(o // bo, bo, i // bi, bi, kh, kw).transpose(0, 2, 4, 5, 3, 1))


def _pack_weight_expr(w: relax.Expr, bi: int, bo: int, depthwise: bool) -> relax.Expr:
    """The same packing for a weight that is a runtime input, as a layout transform."""
    if depthwise:
        o, _, kh, kw = static_shape(w)
        return relax.op.layout_transform(relax.op.reshape(w, [o, kh, kw]),
                                         index_map=lambda c, h, k: (c // bo, h, k, c % bo))
    return relax.op.layout_transform(
        w, index_map=lambda o, i, h, k: (o // bo, i // bi, h, k, i % bi, o % bo))


# -- TE computes of the blocked convolutions ------------------------------------------------

def _padded(data, padding):
    from tvm import topi

    top, left, bottom, right = padding
    if not any(padding):
        return data
    return topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, bottom, right, 0], name="pad")


def _out_hw(data, kernel_hw, strides, padding, dilation):
    h, w = int(data.shape[2]), int(data.shape[3])
    kh, kw = kernel_hw
    top, left, bottom, right = padding
    oh = (h + top + bottom - ((kh - 1) * dilation[0] + 1)) // strides[0] + 1
    ow = (w + left + right - ((kw - 1) * dilation[1] + 1)) // strides[1] + 1
    return oh, ow


def _conv2d_te(data, weight, strides, padding, dilation, groups, cout):
    """out[n, oc, y, x, o] = sum over the group's input blocks r, kh, kw, lanes i of
    data[n, g(oc) + r, y*s + kh*d, x*s + kw*d, i] * weight[oc, r, kh, kw, i, o].

    Where a group's inputs are narrower than a data block (weight block < data block),
    input channel ``g * per_group + i`` is read from its block and lane instead."""
    from tvm import te

    n, _, _, _, bi = (int(d) for d in data.shape)
    oblocks, rblocks, kh, kw, wbi, bo = (int(d) for d in weight.shape)
    oh, ow = _out_hw(data, (kh, kw), strides, padding, dilation)
    pad = _padded(data, padding)
    r = te.reduce_axis((0, rblocks), "r")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    ri = te.reduce_axis((0, wbi), "ri")
    blocks_per_group = (cout // groups) // bo  # output blocks in one group

    def read(b, oc, y, x):
        if groups == 1:
            return pad[b, r, y, x, ri]
        if wbi == bi:
            return pad[b, (oc // blocks_per_group) * rblocks + r, y, x, ri]
        channel = (oc // blocks_per_group) * wbi + ri  # rblocks == 1: the group's inputs
        return pad[b, channel // bi, y, x, channel % bi]

    return te.compute(
        (n, oblocks, oh, ow, bo),
        lambda b, oc, y, x, o: te.sum(
            read(b, oc, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1])
            * weight[oc, r, ry, rx, ri, o], axis=[r, ry, rx, ri]),
        name="conv2d_nchwc")


def _depthwise_te(data, weight, strides, padding, dilation, groups):
    """out[n, c, y, x, i] = sum over kh, kw of data[n, c, y*s + kh*d, x*s + kw*d, i]
    * weight[c, kh, kw, i]."""
    from tvm import te

    n, cblocks, _, _, b = (int(d) for d in data.shape)
    _, kh, kw, _ = (int(d) for d in weight.shape)
    oh, ow = _out_hw(data, (kh, kw), strides, padding, dilation)
    pad = _padded(data, padding)
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    return te.compute(
        (n, cblocks, oh, ow, b),
        lambda bn, c, y, x, i: te.sum(
            pad[bn, c, y * strides[0] + ry * dilation[0], x * strides[1] + rx * dilation[1], i]
            * weight[c, ry, rx, i], axis=[ry, rx]),
        name="depthwise_conv2d_nchwc")
