"""Convert convolutions (and what follows them) to a data layout, without stray transposes.

    NCHW   leave the model as imported (ONNX and PyTorch use NCHW / OIHW)
    NHWC   activations NHWC, conv weights HWIO: the channel axis is innermost,
           so conv, depthwise conv, pooling and the bias / activation epilogues
           all vectorise along channels (what mcc's CPU rules are built for)
    NCHWc  blocked: activations NCHW[b]c, weights OIHW[bi]i[bo]o, b = the target's
           SIMD lanes, given by the caller (passes/layout_blocked.py; CPU targets only)

Which layout a model gets is decided before this pass (mcc.build.pipeline.resolve_layout;
``auto`` on this CPU: mcc.driver.layout_choice); the pass converts to the one it is given.

Steps:
  0. ``relax.stack`` (an unrolled RNN's outputs) as ``concat`` of ``expand_dims``: TVM's
     layout inference for stack fails ("String index out of bounds") and ConvertLayout
     then converts nothing; the per-conv fallback leaves a transpose on each side of every
     conv that fuses with its neighbours into unvectorised gathers (a dynamically
     quantized OCR model: 14 ms of 68 in transposing quantize / rescale kernels);
  1. raise elementwise ``call_tir`` kernels that frontends emit for ONNX Clip
     (``topi.maximum`` / ``topi.minimum`` against a scalar) back to
     ``relax.maximum`` / ``relax.minimum``, which ``ConvertLayout`` can move
     across layouts (left as ``call_tir`` they pin NCHW and cost two transposes
     each: 70 in MobileNetV2);
  2. Relax's ``ConvertLayout`` for conv2d, which propagates through elementwise
     ops, pooling and reductions;
  3. cancel transposes that undo each other, merge chains of them, and share one
     transpose among all readers of a tensor (a residual branch reads its input twice);
  4. the weight transposes are computed now, at compile time (in numpy).
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from mcc.errors import MccError
from mcc.passes.fold_constant_shapes import fold_constant_shapes

_DESIRED = {
    "NHWC": {"relax.nn.conv2d": ["NHWC", "HWIO"]},
}


def convert_layout(mod: tvm.IRModule, layout: str, lanes: int | None = None) -> tvm.IRModule:
    """Return ``mod`` with its convolutions in ``layout`` (NCHW, NHWC, or NCHWc with blocks of
    ``lanes`` channels), transposes cleaned."""
    return ConvertLayout(layout, lanes=lanes)(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.ConvertLayout")
class ConvertLayout:
    """Module pass form of :func:`convert_layout`, for the pipeline."""

    def __init__(self, layout: str, strict: bool = True, say=None, lanes: int | None = None):
        if layout not in _DESIRED and layout not in ("NCHW", "NCHWc"):
            raise MccError(f"unknown layout '{layout}'; valid layouts: NCHW, NHWC, NCHWc")
        if layout == "NCHWc" and not lanes:
            raise MccError("the NCHWc layout needs the target's SIMD lanes (a CPU target)")
        self.layout = layout
        self.strict = strict  # False: keep the model as it is if TVM cannot convert it
        self.say = say  # where a non-strict fallback is announced (one line)
        self.lanes = lanes  # NCHWc: channels per block, the target's fp32 SIMD lanes

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        try:
            return self._convert(mod)
        except Exception as err:
            # TVM's ConvertLayout cannot infer a layout for some op of the model (Magika:
            # "can't find S in source layout ABC"; relax.stack before step 0) and converts
            # nothing. NHWC: convert each conv on its own, with a
            # transpose on each side (adjacent ones cancel): NCHW convs ran 20-40x slower.
            if self.layout == "NHWC":
                try:
                    converted = _convert_each_conv(mod)
                except Exception:  # noqa: BLE001 - report TVM's first reason below
                    converted = None
                if converted is not None:
                    if self.say:
                        self.say(fallback_message(mod, self.layout, err, each_conv=True))
                    return converted
            if self.strict:
                raise
            if self.say:
                self.say(fallback_message(mod, self.layout, err))
            return mod

    def _convert(self, mod: tvm.IRModule) -> tvm.IRModule:
        if self.layout == "NCHW" or not _has_conv2d(mod):
            return mod  # nothing to convert: leave transposes of other models alone
        T = relax.transform
        if self.layout == "NCHWc":
            return _convert_blocked(_raise_scalar_minmax(mod), self.lanes)
        mod = convert_conv_layout(mod, _DESIRED[self.layout])
        if self.layout == "NHWC":  # TVM converts dataflow blocks only, not an If's branches
            mod = _convert_each_conv(mod) or mod
        mod = T.EliminateCommonSubexpr()(mod)  # one transpose of a tensor several ops read
        mod = fold_constant_shapes(mod)  # the HWIO weights, in numpy
        mod = T.DeadCodeElimination()(mod)
        return T.FoldConstant()(mod)


def convert_conv_layout(mod: tvm.IRModule, desired: dict) -> tvm.IRModule:
    """TVM's ConvertLayout to ``desired`` (e.g. int8's ``{"relax.nn.conv2d": ["NHWC",
    "OHWI"]}``) with mcc's two mends: ONNX Clip's scalar max / min, imported as call_tir
    that ConvertLayout cannot see through, raised to relax.maximum / minimum first (else
    each ReLU6 sits between a transpose to NCHW and one back); inverse transposes cancel."""
    mod = _raise_scalar_minmax(_stack_as_concat(mod))
    mod = relax.transform.ConvertLayout(desired)(mod)
    return _cancel_transposes(mod)


def _convert_blocked(mod: tvm.IRModule, lanes: int) -> tvm.IRModule:
    """NCHW[b]c with b = ``lanes``, the target's fp32 SIMD lanes (passes/layout_blocked.py)."""
    from mcc.passes.layout_blocked import to_blocked_layout

    T = relax.transform
    # batch norms that did not fold into a conv become per-channel arithmetic the
    # blocked rewrite carries through; their constants fold first
    mod = T.DecomposeOpsForInference()(mod)
    mod = T.FoldConstant()(T.CanonicalizeBindings()(mod))  # BN's (y, mean, var)[0] -> y
    mod = to_blocked_layout(mod, lanes)
    return T.FoldConstant()(mod)


def fallback_message(mod: tvm.IRModule, layout: str, err: Exception,
                     each_conv: bool = False) -> str:
    """Which op kept ``mod`` from converting as a whole, TVM's reason and what was done
    instead (one line)."""
    from mcc.errors import first_line

    culprit = _failing_op(mod, layout)
    where = f"at {culprit}" if culprit else "in this model"
    instead = ("converted each conv on its own" if each_conv
               else "keeping the imported NCHW layout")
    return f"cannot convert to {layout} {where} ({first_line(err)}); {instead}"


def _convert_each_conv(mod: tvm.IRModule) -> tvm.IRModule | None:
    """Every NCHW/OIHW conv2d with a constant weight as transpose -> NHWC/HWIO conv2d ->
    transpose back, the transposes between consecutive convs cancelled; None when there is
    no such conv."""
    from tvm.relax.dpl import is_const, is_op, wildcard

    from mcc.passes.rewrite import rewrite_matching_calls

    pattern = is_op("relax.nn.conv2d")(wildcard(), is_const())
    count = []

    def rewrite(call):
        attrs = call.attrs
        if (attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW"
                or attrs.out_layout not in ("", "NCHW")):
            return call
        count.append(call)
        weight = relax.const(call.args[1].value.numpy().transpose(2, 3, 1, 0).copy())
        conv = relax.op.nn.conv2d(
            relax.op.permute_dims(call.args[0], [0, 2, 3, 1]), weight, strides=attrs.strides,
            padding=attrs.padding, dilation=attrs.dilation, groups=attrs.groups,
            data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
            out_dtype=attrs.out_dtype)
        return relax.op.permute_dims(conv, [0, 3, 1, 2])

    mod = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # not the caller's
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = rewrite_matching_calls(pattern, rewrite, func)
    if not count:
        return None
    T = relax.transform
    mod = _cancel_transposes(mod)
    mod = T.EliminateCommonSubexpr()(mod)
    return T.FoldConstant()(T.DeadCodeElimination()(mod))


def _failing_op(mod: tvm.IRModule, layout: str) -> str | None:
    """The first binding of ``main`` whose prefix of the graph no longer converts: TVM's
    error does not say which op it was. A binary search over prefixes of the dataflow
    block (each conversion is graph-level, milliseconds)."""
    names = [gv.name_hint for gv in mod.get_global_vars()]
    func = mod["main"] if "main" in names else None
    if layout not in _DESIRED or not isinstance(func, relax.Function) \
            or not isinstance(func.body, relax.SeqExpr):
        return None
    blocks = [b for b in func.body.blocks if isinstance(b, relax.DataflowBlock)]
    if len(func.body.blocks) != 1 or not blocks:
        return None
    bindings = list(blocks[0].bindings)

    def fails(k: int) -> bool:
        last = bindings[k - 1].var
        out = relax.Var("prefix_out", last.ty)
        body = relax.SeqExpr([relax.DataflowBlock([*bindings[:k], relax.VarBinding(out, last)])],
                             out)
        probe = tvm.IRModule({"main": relax.Function(func.params, body, last.ty,
                                                     attrs=func.attrs)})
        for gv, f in mod.functions_items():
            if gv.name_hint != "main":
                probe[gv] = f
        try:  # TVM's pass itself: mcc's would skip a prefix without a conv
            relax.transform.ConvertLayout(_DESIRED[layout])(
                _raise_scalar_minmax(_stack_as_concat(probe)))
        except Exception:
            return True
        return False

    try:
        lo, hi = 1, len(bindings)
        if not fails(hi):
            return None
        while lo < hi:  # smallest failing prefix
            mid = (lo + hi) // 2
            if fails(mid):
                hi = mid
            else:
                lo = mid + 1
    except Exception:  # a prefix TVM will not even build: no name, the reason still stands
        return None
    value = bindings[lo - 1].value
    op = value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) \
        else type(value).__name__
    return f"{op} ({bindings[lo - 1].var.name})"


def _has_conv2d(mod: tvm.IRModule) -> bool:
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function) and not found:
            relax.analysis.post_order_visit(func, visit)
    return bool(found)


# -- 0. stack -> concat of expand_dims ----------------------------------------------------

def _stack_as_concat(mod: tvm.IRModule) -> tvm.IRModule:
    """Every ``relax.stack`` of a tuple as ``concat`` of its items each given the new
    axis: the same tensor, in ops whose layout ConvertLayout can infer."""
    from tvm.relax.dpl import is_op, wildcard

    from mcc.passes.rewrite import rewrite_matching_calls

    def rewrite(call):
        items, axis = call.args[0], int(call.attrs.axis)
        if not isinstance(items, relax.Tuple) or not items.fields:
            return call
        return relax.op.concat([relax.op.expand_dims(f, axis) for f in items.fields], axis)

    pattern = is_op("relax.stack")(wildcard())
    mod = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # not the caller's
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = rewrite_matching_calls(pattern, rewrite, func)
    return mod


# -- 1. call_tir(maximum/minimum against a scalar) -> relax.maximum / relax.minimum ---------

_LOADS = ("BufferLoad", "TensorLoad")  # the class name differs between TIR versions


def _scalar_minmax(func) -> tuple[str, float | None] | None:
    """("maximum"|"minimum", baked constant or None) if ``func`` is max/min(A[i], scalar)."""
    if not isinstance(func, tirx.PrimFunc):
        return None
    import tvm_ffi

    stores = []
    tvm_ffi.structural_walk(func.body, (tirx.BufferStore, stores.append), order="post")
    if len(stores) != 1 or len(func.params) not in (2, 3):
        return None
    value = stores[0].value
    kind = {tirx.Max: "maximum", tirx.Min: "minimum"}.get(type(value))
    if kind is None:
        return None
    a, b = value.a, value.b
    if type(a).__name__ not in _LOADS or len(a.indices) != len(stores[0].indices):
        return None
    if not all(x.same_as(y) for x, y in zip(a.indices, stores[0].indices)):
        return None
    if type(b).__name__ in _LOADS and len(b.indices) == 0 and len(func.params) == 3:
        return kind, None
    if isinstance(b, tirx.FloatImm) and len(func.params) == 2:
        return kind, float(b.value)
    return None


@relax.expr_functor.mutator
class _RaiseMinMax(relax.PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod = mod

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.clip":
            return _clip_as_minmax(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir"):
            return call
        callee, args = call.args[0], call.args[1]
        if not isinstance(callee, tvm.ir.GlobalVar) or not isinstance(args, relax.Tuple):
            return call
        found = _scalar_minmax(self.mod[callee])
        if found is None or len(args.fields) != (1 if found[1] is not None else 2):
            return call
        kind, baked = found
        data = args.fields[0]
        dtype = data.ty.dtype
        bound = relax.const(baked, dtype) if baked is not None else args.fields[1]
        if not isinstance(bound, tvm.ir.expr.Constant):
            return call
        op = relax.op.maximum if kind == "maximum" else relax.op.minimum
        return op(data, bound)


def _clip_as_minmax(call):
    """``relax.clip(x, lo, hi)`` (TVM's HardSwish / HardSigmoid) as ``minimum(maximum(x, lo),
    hi)``: ConvertLayout has no layout rule for clip, so each HardSwish of a NHWC MobileNet
    sat between a transpose to NCHW and one back, in a kernel of its own instead of the
    conv's epilogue (PP-LCNet: 12 such kernels)."""
    x, *bounds = call.args
    dtype = str(getattr(x.ty, "dtype", ""))
    if not dtype.startswith("float") or any(
            not isinstance(b, (tirx.IntImm, tirx.FloatImm)) for b in bounds):
        return call
    low, high = (relax.const(float(b.value), dtype) for b in bounds)
    return relax.op.minimum(relax.op.maximum(x, low), high)


def _raise_scalar_minmax(mod: tvm.IRModule) -> tvm.IRModule:
    mutator = _RaiseMinMax(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return relax.transform.DeadCodeElimination()(mutator.builder_.get())


# -- 3. permute_dims(permute_dims(x, p), q) -> x (inverse) or permute_dims(x, p∘q) ----------

def _cancel_transposes(mod: tvm.IRModule) -> tvm.IRModule:
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    inner = is_op("relax.permute_dims")(wildcard())
    outer = is_op("relax.permute_dims")(inner)

    def rewrite(expr, matches):
        first, second = matches[inner], matches[outer]
        p, q = _axes(first), _axes(second)
        if p is None or q is None:
            return expr
        composed = [p[i] for i in q]  # out[i] = x[p[q[i]]]
        source = first.args[0]
        if composed == list(range(len(composed))):
            return source
        return relax.op.permute_dims(source, composed)

    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mod[gv] = rewrite_call(outer, rewrite, func)
    return mod


def _axes(call) -> list[int] | None:
    axes = call.attrs.axes
    ndim = call.args[0].ty.ndim
    if axes is None:
        return list(reversed(range(ndim))) if ndim >= 0 else None
    if ndim < 0:
        return None
    return [int(a) % ndim for a in axes]  # ONNX perms may count from the end
