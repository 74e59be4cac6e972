"""NaN through relu / clip / maximum / minimum, as ONNX and PyTorch give it.

TVM lowers these to ``max``/``min``, which LLVM emits as ``maxnum``/``minnum`` (or
``vmaxps``): a NaN operand yields the other operand, so ``Relu(NaN)`` came out 0.
Each float call is followed by ``keep_nan``: ``isnan(x) ? x : op(x, ...)`` for its
non-constant operands. Run just before LegalizeOps, after the layout passes (which match these ops
by name): the select is elementwise and fuses into the same kernel as the op, e.g. a
convolution's epilogue.
"""

from __future__ import annotations

import tvm
from tvm.relax import PyExprMutator, expr_functor

from mcc.passes.rewrite import rewrite_functions

_OPS = {"relax.nn.relu": 1, "relax.clip": 1, "relax.maximum": 2, "relax.minimum": 2}


def _is_float(expr) -> bool:
    sinfo = getattr(expr, "ty", None)
    dtype = str(getattr(sinfo, "dtype", ""))
    return dtype.startswith(("float", "bfloat"))


@expr_functor.mutator
class _NaNRewriter(PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name in _OPS):
            return call
        operands = [a for a in list(call.args)[:_OPS[call.op.name]]
                    if _is_float(a) and not isinstance(a, tvm.ir.GenericConst)]
        if not operands or not _is_float(call):
            return call
        name = call.op.name.rsplit(".", 1)[-1]
        if name == "clip":
            lo, hi = (getattr(a, "value", a) for a in call.args[1:3])
            return self.builder_.emit_te(_nan_safe, name, call.args[0], lo, hi,
                                         primfunc_name_hint=name)
        return self.builder_.emit_te(_nan_safe, name, *call.args, primfunc_name_hint=name)


def _at(x, index, shape):
    """``x`` read at ``index`` of a result of ``shape`` it broadcasts to (plain indices
    where it does not broadcast: the kernel stays elementwise and fuses as such)."""
    from tvm import tirx

    def one(d):
        return isinstance(d, tirx.IntImm) and d.value == 1

    offset = len(shape) - len(x.shape)
    return x(*[0 if one(d) and not one(shape[offset + k]) else index[offset + k]
               for k, d in enumerate(x.shape)])


def _nan_safe(name, *args):
    """TE: relu / clip / maximum / minimum in one elementwise stage that returns a NaN
    operand as it is (a second stage or a bool buffer trips FuseTIR and layout passes)."""
    from tvm import te, tirx

    if name == "clip":
        x, lo, hi = args
        tensors = [x]
    else:
        tensors = list(args)
    rank = max(len(t.shape) for t in tensors)
    shape = []
    for axis in range(rank):
        dims = [t.shape[axis - rank + len(t.shape)] for t in tensors
                if axis - rank + len(t.shape) >= 0]
        wide = [d for d in dims if not (isinstance(d, tirx.IntImm) and d.value == 1)]
        shape.append(wide[0] if wide else dims[0])
    dtype = tensors[0].dtype

    def value(*index):
        v = [_at(t, index, shape) for t in tensors]
        if name == "relu":
            out = tirx.Max(v[0], tirx.const(0, dtype))
        elif name == "clip":
            bounds = [tirx.const(float(b), dtype) if isinstance(b, (int, float))
                      else tirx.Cast(dtype, b) for b in (lo, hi)]
            out = tirx.Min(tirx.Max(v[0], bounds[0]), bounds[1])
        elif name == "maximum":
            out = tirx.Max(v[0], v[1])
        else:
            out = tirx.Min(v[0], v[1])
        for item in reversed(v):
            out = tirx.Select(tirx.isnan(item), item, out)
        return out

    return te.compute(shape, value, name=f"{name}_nan")


def keep_nan(result, *operands):
    """TE: ``result`` where no operand (broadcast to it) is NaN, else that NaN -- one
    float-only elementwise kernel (a bool intermediate buffer would block layout passes)."""
    from tvm import te, tirx

    rank = len(result.shape)

    def value(*index):
        out = result(*index)
        for x in reversed(operands):
            offset = rank - len(x.shape)
            at = [0 if isinstance(d, tirx.IntImm) and d.value == 1 else index[offset + k]
                  for k, d in enumerate(x.shape)]
            v = x(*at)
            out = tirx.Select(tirx.isnan(v), v, out)
        return out

    return te.compute(result.shape, value, name="keep_nan")


def propagate_nan(mod: tvm.IRModule) -> tvm.IRModule:
    return PropagateNaN()(mod)


@tvm.transform.module_pass(opt_level=0, name="mcc.PropagateNaN")
class PropagateNaN:
    """Module pass form of :func:`propagate_nan`."""

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return rewrite_functions(_NaNRewriter(mod), mod)
