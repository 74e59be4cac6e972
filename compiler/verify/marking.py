"""Expose an ONNX model's intermediate tensors as graph outputs ("mark" them, as
Polygraphy's ``--onnx-outputs mark all`` does), so that a compiled module and the
reference runtime both return them and ``mcc compare`` can diff them one by one.

Only *activations* are marked: tensors that depend on a graph input's values. Weights,
constants and shape arithmetic (the outputs of Shape / Size and everything computed
from them and from initializers only) are left alone: they carry no per-input error, and
marking them would stop the importer from folding shape subgraphs into constants.
Tensors whose element type or rank ONNX shape inference cannot tell are not marked
(an output needs both), nor are tensors inside If / Loop / Scan bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcc.errors import MccError

# ops whose output describes an input's shape or size, not its values
_METADATA_OPS = {"Shape", "Size"}


@dataclass(frozen=True)
class Layer:
    """One marked tensor: the node that produces it, in graph (topological) order, and the
    nearest marked tensors (or graph inputs, as "") that feed it."""

    index: int  # position among the marked tensors
    tensor: str
    node: str  # the node's name, or "#<node index>" where it has none
    op: str
    feeds: tuple[str, ...]  # nearest marked ancestors ("" for a graph input)


@dataclass(frozen=True)
class Marked:
    model: object  # onnx.ModelProto with every marked tensor as a graph output
    layers: list[Layer]  # in topological order; the original outputs included
    candidates: int  # activations before --layers filtered them
    untyped: int  # activations left out: shape inference gave no element type or rank


def mark_layers(proto, select: tuple[str, ...] = ()) -> Marked:
    """A copy of ``proto`` whose activations (only those of nodes whose op type or name is
    in ``select``, when given; the model's own outputs always) are graph outputs."""
    import onnx

    graph = proto.graph
    types = _element_types(proto)
    initializers = {i.name for i in graph.initializer}
    graph_inputs = [vi.name for vi in graph.input if vi.name not in initializers]
    outputs = [o.name for o in graph.output]
    _check_selection(graph, select)
    wanted = {s.lower() for s in select}

    live = set(graph_inputs)  # tensors whose values depend on a graph input
    nearest: dict[str, tuple[str, ...]] = {name: ("",) for name in graph_inputs}
    layers: list[Layer] = []
    candidates = untyped = 0
    for index, node in enumerate(graph.node):
        if node.op_type in _METADATA_OPS or not any(i in live for i in node.input if i):
            continue
        name = node.name or f"#{index}"
        feeds = tuple(dict.fromkeys(f for i in node.input if i in live for f in nearest[i]))
        for tensor in (t for t in node.output if t):
            live.add(tensor)
            nearest[tensor] = feeds
            candidates += 1
            chosen = tensor in outputs or not wanted or node.op_type.lower() in wanted \
                or name.lower() in wanted or tensor.lower() in wanted
            if not chosen:
                continue
            if tensor not in outputs and tensor not in types:
                untyped += 1
                continue
            layers.append(Layer(len(layers), tensor, name, node.op_type, feeds))
            nearest[tensor] = (tensor,)

    marked = onnx.ModelProto()
    marked.CopyFrom(proto)
    for layer in layers:
        if layer.tensor not in outputs:
            marked.graph.output.append(types[layer.tensor])
    return Marked(marked, layers, candidates, untyped)


def _element_types(proto) -> dict[str, object]:
    """Tensor name -> its ValueInfoProto with an element type and a shape (of known rank;
    an output needs both), from shape inference (when it fails, the model's own
    declarations)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - inference is a help here: unknown types stay unmarked
        inferred = proto
    types = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        tensor = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tensor.elem_type and tensor.HasField("shape"):
            types[vi.name] = vi
    return types


def _check_selection(graph, select) -> None:
    """--layers names an op type, a node or a tensor of this model, or is an error."""
    known = {}
    for index, node in enumerate(graph.node):
        for key in (node.op_type, node.name or f"#{index}", *node.output):
            known.setdefault(key.lower(), key)
    for item in select:
        if item.lower() not in known:
            ops = sorted({n.op_type for n in graph.node})
            raise MccError(f"--layers '{item}' matches no op type, node or tensor of the model; "
                           f"its op types: {', '.join(ops)}")
