"""Which tensor channels of a Relax function must be removed together.

Every channel of every tensor in ``main`` is a node of a union-find. An op
that maps channel ``c`` of its inputs to channel ``c`` of its output (bias
add, batch norm, activations, pooling, elementwise ops between tensors,
residual adds, a depthwise conv) joins those nodes; concat joins each input
channel with its slot in the output. A class of joined nodes is one channel
that exists in several tensors at once: it can only be removed everywhere or
nowhere. Convolutions and dense layers are the boundaries: they
*produce* the classes of their output channels (one filter each) and
*consume* those of their inputs (one input slice of the weights each). A
grouped (not depthwise) conv is one too; its weight is kept block-diagonal
(``[O, C_in, KH, KW]``, zero outside each group) so it reads like any conv,
and the pruning pass keeps its groups the same size.

Channels that touch anything this analysis does not understand (graph inputs
and outputs, reshapes other than ``[N,C,1,1] <-> [N,C]``, layer norm, ...)
are pinned: their class is never removed.

Layout assumptions: conv2d / pooling in NCHW with OIHW weights (what the ONNX
and PyTorch importers produce); dense is ``matmul(x, W)`` with a constant
``W[in, out]`` and features on the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from mcc.passes.shapes import static_shape

# ops whose output channel c depends only on input channel c, elementwise
UNARY_OPS = {"relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.tanh", "relax.nn.silu",
             "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.negative", "relax.exp",
             "relax.nn.leakyrelu", "relax.nn.relu6", "relax.abs", "relax.square",
             "relax.sqrt"}
BINARY_OPS = {"relax.add", "relax.subtract", "relax.multiply", "relax.divide",
              "relax.maximum", "relax.minimum"}
POOL_OPS = {"relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d"}
REDUCE_OPS = {"relax.mean", "relax.sum", "relax.max"}


@dataclass
class Tensor:
    """A tensor's channel axis and the union-find index of its channel 0."""

    axis: int
    channels: int
    base: int
    shape: tuple[int, ...]

    def nodes(self) -> range:
        return range(self.base, self.base + self.channels)


@dataclass
class Layer:
    """A conv2d (plain, grouped or depthwise) or dense layer with constant weights."""

    index: int
    kind: str  # "conv2d", "grouped", "depthwise" or "dense"
    var: relax.Var
    weight: np.ndarray  # OIHW for convs (grouped: block-diagonal [O, C_in]), [in, out] dense
    inp: Tensor
    out: Tensor
    groups: int = 1

    @property
    def label(self) -> str:
        if self.kind == "dense":
            return f"dense{self.index}"
        kh, kw = self.weight.shape[2:]
        return f"{self.kind}{self.index} {kh}x{kw}"

    def filters(self) -> np.ndarray:
        """One row per output channel: the weights that produce it."""
        if self.kind == "dense":
            return self.weight.T.reshape(self.weight.shape[1], -1)
        return self.weight.reshape(self.weight.shape[0], -1)


@dataclass
class Step:
    """One binding whose output channels the analysis tracks, and how it was formed."""

    kind: str  # alias conv2d depthwise dense unary binary_const binary pool reduce reshape
    #            concat bn_get
    var: relax.Var
    call: object
    inputs: list[Tensor]
    out: Tensor
    layer: Layer | None = None
    const: np.ndarray | None = None  # binary_const: the constant, per channel (or scalar)
    const_first: bool = False  # binary_const: the constant is the left operand


@dataclass
class ChannelGraph:
    tensors: dict = field(default_factory=dict)  # relax.Var -> Tensor
    steps: list[Step] = field(default_factory=list)
    layers: list[Layer] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    pinned: list[bool] = field(default_factory=list)
    bn_inputs: dict = field(default_factory=dict)  # batch_norm tuple var -> (Tensor, call)

    # union-find ---------------------------------------------------------------------------
    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.pinned[ra] = self.pinned[ra] or self.pinned[rb]

    def pin(self, tensor: Tensor) -> None:
        for node in tensor.nodes():
            self.pinned[self.find(node)] = True

    def is_pinned(self, node: int) -> bool:
        return self.pinned[self.find(node)]

    def new_tensor(self, shape, axis: int) -> Tensor:
        channels = int(shape[axis])
        tensor = Tensor(axis, channels, len(self.parent), tuple(shape))
        self.parent.extend(range(tensor.base, tensor.base + channels))
        self.pinned.extend([False] * channels)
        return tensor

    def classes(self) -> dict[int, list[int]]:
        """root -> member nodes."""
        members: dict[int, list[int]] = {}
        for node in range(len(self.parent)):
            members.setdefault(self.find(node), []).append(node)
        return members


def constant(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.GenericConst) else None


def main_bindings(func) -> list | None:
    """The bindings of ``func``'s body in order, or None for a body this pass cannot rebuild."""
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return None
    bindings = []
    for block in body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                return None
            bindings.append(binding)
    return bindings


def analyse(func) -> ChannelGraph | None:
    """The channel graph of ``func`` (None if its body has a form this pass does not rebuild)."""
    bindings = main_bindings(func)
    if bindings is None:
        return None
    graph = ChannelGraph()
    for binding in bindings:
        _visit(graph, binding.var, binding.value)
    for var in _vars_in(func.body.body):  # the function's results keep all their channels
        if var in graph.tensors:
            graph.pin(graph.tensors[var])
    return graph


def _vars_in(expr) -> list:
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars_in(f)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars_in(expr.tuple_value)
    if isinstance(expr, relax.Call):
        return [v for a in expr.args for v in _vars_in(a)]
    if isinstance(expr, (relax.If, relax.SeqExpr, relax.Function)):
        return list(relax.analysis.free_vars(expr))  # whatever such an expression reads
    return []


def _opaque(graph: ChannelGraph, value) -> None:
    """An op this analysis does not understand: every tracked tensor it touches is pinned."""
    for var in _vars_in(value):
        if var in graph.tensors:
            graph.pin(graph.tensors[var])
        if var in graph.bn_inputs:
            graph.pin(graph.bn_inputs[var][0])


def _input(graph: ChannelGraph, expr, axis: int | None = None) -> Tensor | None:
    """The tracked tensor behind ``expr``; an untracked one (graph input, result of an opaque
    op) becomes tracked but pinned. ``axis`` None: only an already tracked tensor."""
    if not isinstance(expr, relax.Var):
        return None
    tensor = graph.tensors.get(expr)
    if tensor is not None:
        if axis is not None and tensor.axis != axis:
            graph.pin(tensor)
            return None
        return tensor
    shape = static_shape(expr)
    if axis is None or shape is None or axis >= len(shape):
        return None
    tensor = graph.new_tensor(shape, axis)
    graph.pin(tensor)
    graph.tensors[expr] = tensor
    return tensor


def _output(graph: ChannelGraph, var, axis: int) -> Tensor | None:
    shape = static_shape(var)
    if shape is None or axis >= len(shape):
        return None
    tensor = graph.new_tensor(shape, axis)
    graph.tensors[var] = tensor
    return tensor


def _add_joined(graph, step) -> bool:
    """Record ``step`` and join its output's channel c with channel c of each input."""
    graph.steps.append(step)
    _join(graph, step)
    return True


def _join(graph: ChannelGraph, step: Step) -> None:
    """Join channel c of every input with channel c of the output."""
    for tensor in step.inputs:
        for c in range(step.out.channels):
            graph.union(tensor.base + c, step.out.base + c)


def _visit(graph: ChannelGraph, var, value) -> None:
    if isinstance(value, relax.Var):
        if value in graph.tensors:
            graph.tensors[var] = graph.tensors[value]
        return
    if isinstance(value, relax.TupleGetItem):
        source = value.tuple_value
        if source in graph.bn_inputs and value.index == 0:
            tensor, _ = graph.bn_inputs[source]
            out = _output(graph, var, tensor.axis)
            if out is not None and out.channels == tensor.channels:
                step = Step("bn_get", var, graph.bn_inputs[source][1], [tensor], out)
                graph.steps.append(step)
                _join(graph, step)
                return
            graph.pin(tensor)
        return
    if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
        _opaque(graph, value)
        return
    name = value.op.name
    handled = _RULES.get(name, _rule_by_set(name))
    if handled is None or not handled(graph, var, value):
        _opaque(graph, value)


def _rule_by_set(name: str):
    if name in UNARY_OPS:
        return _unary
    if name in BINARY_OPS:
        return _binary
    if name in POOL_OPS:
        return _pool
    if name in REDUCE_OPS:
        return _reduce
    return None


def _conv2d(graph, var, call) -> bool:
    attrs = call.attrs
    weight = constant(call.args[1])
    if (weight is None or attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW"
            or attrs.out_layout not in ("NCHW", "")):
        return False
    groups = int(attrs.groups)
    x_shape = static_shape(call.args[0])
    if x_shape is None or len(x_shape) != 4:
        return False
    depthwise = groups > 1 and groups == x_shape[1] == weight.shape[0] and weight.shape[1] == 1
    grouped = groups > 1 and not depthwise
    if grouped:
        if x_shape[1] != groups * weight.shape[1] or weight.shape[0] % groups:
            return False
        weight = block_diagonal(weight, groups)
    inp = _input(graph, call.args[0], 1)
    out = _output(graph, var, 1)
    if inp is None or out is None:
        return False
    kind = "depthwise" if depthwise else "grouped" if grouped else "conv2d"
    layer = Layer(len(graph.layers), kind, var, weight, inp, out, groups=groups)
    graph.layers.append(layer)
    step = Step(kind, var, call, [inp], out, layer=layer)
    graph.steps.append(step)
    if depthwise:
        _join(graph, step)
    return True


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv's [O, C_in / groups, KH, KW] weight as the [O, C_in, KH, KW] weight of
    the equivalent plain conv (zero where an output's group does not read an input)."""
    out_ch, per_group = weight.shape[:2]
    full = np.zeros((out_ch, per_group * groups, *weight.shape[2:]), dtype=weight.dtype)
    per_out = out_ch // groups
    for j in range(groups):
        full[j * per_out:(j + 1) * per_out, j * per_group:(j + 1) * per_group] = \
            weight[j * per_out:(j + 1) * per_out]
    return full


def _matmul(graph, var, call) -> bool:
    weight = constant(call.args[1])
    x_shape = static_shape(call.args[0])
    if weight is None or weight.ndim != 2 or x_shape is None or len(x_shape) < 2:
        return False
    axis = len(x_shape) - 1
    inp = _input(graph, call.args[0], axis)
    out = _output(graph, var, axis)
    if inp is None or out is None:
        return False
    layer = Layer(len(graph.layers), "dense", var, weight, inp, out)
    graph.layers.append(layer)
    graph.steps.append(Step("dense", var, call, [inp], out, layer=layer))
    return True


def _unary(graph, var, call) -> bool:
    inp = _input(graph, call.args[0])
    if inp is None:
        return False
    out = _output(graph, var, inp.axis)
    if out is None or out.shape != inp.shape:
        return False
    step = Step("unary", var, call, [inp], out)
    return _add_joined(graph, step)


def per_channel(const: np.ndarray, out_shape, axis: int) -> np.ndarray | None:
    """A broadcast constant as one value per channel (shape (C,) or (1,)), or None if it
    varies along another axis."""
    if const.ndim > len(out_shape):
        return None
    aligned = (1,) * (len(out_shape) - const.ndim) + const.shape
    for i, dim in enumerate(aligned):
        if dim != 1 and i != axis:
            return None
    return const.reshape(-1)


def _binary(graph, var, call) -> bool:
    a, b = call.args
    out_shape = static_shape(var)
    if out_shape is None:
        return False
    const_a, const_b = constant(a), constant(b)
    if const_a is not None or const_b is not None:
        const, other = (const_a, b) if const_a is not None else (const_b, a)
        inp = _input(graph, other)
        if inp is None or inp.shape != out_shape:
            return False
        values = per_channel(const, out_shape, inp.axis)
        if values is None:
            return False
        out = _output(graph, var, inp.axis)
        step = Step("binary_const", var, call, [inp], out, const=values,
                    const_first=const_a is not None)
        return _add_joined(graph, step)
    ta, tb = _input(graph, a), _input(graph, b)
    if ta is None or tb is None:
        return False
    rank = len(out_shape)
    axis_a = ta.axis + rank - len(ta.shape)
    axis_b = tb.axis + rank - len(tb.shape)
    if axis_a != axis_b or ta.channels != tb.channels or out_shape[axis_a] != ta.channels:
        return False
    out = _output(graph, var, axis_a)
    step = Step("binary", var, call, [ta, tb], out)
    return _add_joined(graph, step)


def _pool(graph, var, call) -> bool:
    if call.attrs.layout != "NCHW" or call.attrs.out_layout not in ("NCHW", ""):
        return False
    inp = _input(graph, call.args[0], 1)
    out = _output(graph, var, 1) if inp is not None else None
    if out is None or out.channels != inp.channels:
        return False
    step = Step("pool", var, call, [inp], out)
    return _add_joined(graph, step)


def _reduce(graph, var, call) -> bool:
    inp = _input(graph, call.args[0])
    if inp is None or call.attrs.axis is None:
        return False
    rank = len(inp.shape)
    axes = sorted(int(a) % rank for a in call.attrs.axis)
    if inp.axis in axes:
        return False
    axis = inp.axis if call.attrs.keepdims else inp.axis - sum(a < inp.axis for a in axes)
    out = _output(graph, var, axis)
    if out is None or out.channels != inp.channels:
        return False
    step = Step("reduce", var, call, [inp], out)
    return _add_joined(graph, step)


def _reshape(graph, var, call) -> bool:
    """Only reshapes that keep the channel as the one non-unit axis after the batch:
    [N, C, 1, 1] <-> [N, C] (flatten after global pooling)."""
    inp = _input(graph, call.args[0])
    out_shape = static_shape(var)
    if inp is None or out_shape is None:
        return False
    axis = _channel_axis_after_reshape(inp.shape, inp.axis, out_shape)
    if axis is None:
        return False
    out = _output(graph, var, axis)
    step = Step("reshape", var, call, [inp], out)
    return _add_joined(graph, step)


def _channel_axis_after_reshape(in_shape, axis, out_shape) -> int | None:
    if any(d != 1 for d in in_shape[axis + 1:]):
        return None
    lead = int(np.prod(in_shape[:axis]))
    for new_axis, dim in enumerate(out_shape):
        if (dim == in_shape[axis] and int(np.prod(out_shape[:new_axis])) == lead
                and all(d == 1 for d in out_shape[new_axis + 1:])):
            return new_axis
    return None


def _concat(graph, var, call) -> bool:
    fields = call.args[0]
    if not isinstance(fields, relax.Tuple):
        return False
    out_shape = static_shape(var)
    if out_shape is None:
        return False
    axis = int(call.attrs.axis) % len(out_shape)
    inputs = [_input(graph, f, axis) for f in fields.fields]
    if any(t is None for t in inputs):
        return False
    out = _output(graph, var, axis)
    step = Step("concat", var, call, inputs, out)
    graph.steps.append(step)
    offset = 0
    for tensor in inputs:
        for c in range(tensor.channels):
            graph.union(tensor.base + c, out.base + offset + c)
        offset += tensor.channels
    return True


def _call_tir(graph, var, call) -> bool:
    """The ONNX importer lowers Clip to ``call_tir(maximum / minimum, (x, scalar))`` right
    away; read those as the Relax ops they are (the rewrite re-emits them as such)."""
    callee, args = call.args[0], call.args[1]
    name = str(getattr(callee, "name_hint", "") or getattr(callee, "name", ""))
    op = {"maximum": relax.op.maximum, "minimum": relax.op.minimum}.get(name.rstrip("0123456789"))
    if op is None or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
        return False
    x, bound = args.fields
    value = constant(bound)
    if value is None or value.ndim != 0 or not isinstance(x, relax.Var):
        return False
    return _binary(graph, var, op(x, bound))


def _batch_norm(graph, var, call) -> bool:
    if not all(isinstance(a, tvm.ir.GenericConst) for a in call.args[1:5]):
        return False
    inp = _input(graph, call.args[0])
    if inp is None or int(call.attrs.axis) % len(inp.shape) != inp.axis:
        return False
    graph.bn_inputs[var] = (inp, call)
    return True


_RULES = {
    "relax.nn.conv2d": _conv2d,
    "relax.matmul": _matmul,
    "relax.reshape": _reshape,
    "relax.concat": _concat,
    "relax.nn.batch_norm": _batch_norm,
    "relax.call_tir": _call_tir,
}
