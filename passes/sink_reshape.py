"""Move reshapes below the elementwise ops that follow them, so epilogues fuse.

FuseOps fuses a conv / matmul kernel (``kOutEWiseFusable``) only with the elementwise and
broadcast ops that follow it: a reshape (``kInjective``) in between ends the kernel. An
ONNX MatMul of a [B, S, K] tensor imports as reshape-to-2-D, matmul, reshape back, and an
int8 dense site (mcc.passes.quantize) adds a [1, 1, M, K] view around its kernel, so in a
transformer every bias add, GELU, residual add and next-layer quantize ran as a kernel of
its own, reading and writing the fp32 output once more.

A reshape that keeps the last axis commutes with an elementwise op when the op's other
operands are scalars, tensors that vary along the last axis only (a bias), or tensors of
the same shape (reshaped the inverse way: a residual input):

    y = reshape(x, s); z = add(y, bias)   ->   z0 = add(x, bias); z = reshape(z0, s)

Applied in graph order, a reshape sinks through the whole elementwise chain; reshapes of
reshapes collapse into one and a reshape to the tensor's own shape disappears, so the
int8 kernel's [1, 1, M, N] output flows into bias, GELU and quantize, which FuseOps then
puts in its epilogue. It stops at any other op (layer norm, softmax, transpose, matmul).
"""

from __future__ import annotations

import tvm
from tvm import relax

from mcc.passes.rewrite import rewrite_functions
from mcc.passes.shapes import static_shape

ELEMENTWISE = frozenset(f"relax.{name}" for name in (
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "power",
    "erf", "tanh", "sigmoid", "exp", "sqrt", "rsqrt", "negative", "abs", "round", "floor",
    "ceil", "clip", "astype", "nn.relu", "nn.gelu", "nn.gelu_tanh", "nn.silu"))
_RESHAPE = "relax.reshape"


def _op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _along_last_axis(shape: tuple[int, ...], rank: int) -> bool:
    """An operand of ``shape`` broadcasts against a rank-``rank`` tensor along its last axis
    only (a scalar, or [..., 1, N]), which the reshape keeps."""
    return len(shape) <= rank and all(d == 1 for d in shape[:-1])


@relax.expr_functor.mutator
class _Sink(relax.PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.views: dict = {}  # var bound to reshape(x, s) -> (x, its static shape)

    def visit_var_binding_(self, binding):
        value = self.visit_expr(binding.value)
        name = _op_name(value)
        if name == _RESHAPE:
            self._reshape(binding.var, value)
        elif name in ELEMENTWISE and (sunk := self._sink(binding.var, value)) is not None:
            self.set_var_remap(binding.var, sunk)
        else:
            self.set_var_remap(binding.var, self.builder_.emit(value, binding.var.name))

    def _reshape(self, var, value):
        source, target = value.args[0], static_shape(var)
        if source in self.views and target is not None:  # a reshape of a reshape: one
            source = self.views[source][0]
        if target is not None and static_shape(source) == target:
            self.set_var_remap(var, source)
            return
        new = self.builder_.emit(relax.op.reshape(source, value.args[1]), var.name)
        shape = static_shape(source)
        if shape is not None and target is not None:
            self.views[new] = (source, shape)
        self.set_var_remap(var, new)

    def _sink(self, var, call):
        """The op on the reshapes' sources, reshaped after; None where it does not commute."""
        out = static_shape(var)
        views = [self.views[a] for a in call.args if a in self.views]
        if out is None or not views:
            return None
        inner = views[0][1]
        if inner[-1:] != out[-1:] or any(shape != inner for _, shape in views):
            return None
        args = []
        for arg in call.args:
            if arg in self.views:
                args.append(self.views[arg][0])
            elif not isinstance(arg, relax.Expr) or not isinstance(arg.ty, relax.TensorType):
                args.append(arg)  # attributes-like arguments (clip's bounds)
            elif (shape := static_shape(arg)) is not None and _along_last_axis(shape, len(inner)):
                args.append(arg)  # a scalar or a bias: broadcasts the same either way
            elif shape == out:  # a same-shape input (a residual): viewed the other way
                args.append(self.builder_.emit(relax.op.reshape(arg, inner)))
            else:
                return None
        inner_value = self.builder_.emit(relax.Call(call.op, args, call.attrs, call.ty_args),
                                         var.name)
        result = self.builder_.emit(relax.op.reshape(inner_value, out), var.name)
        self.views[result] = (inner_value, inner)
        return result


def sink_reshapes(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with reshapes moved below elementwise ops (see the module doc)."""
    return relax.transform.DeadCodeElimination(["main"])(rewrite_functions(_Sink(mod), mod))
