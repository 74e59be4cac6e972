"""ONNX Scan (opset 9+), unrolled over its static scan length; If branches that cannot run.

The body graph is converted once per step with the same converters as the main
graph (mcc's on top of TVM's), states threaded from step to step and the
per-step outputs stacked. Outer-scope values the body reads are visible.

TVM's importer converts both branches of every ``If``. With the input shapes
fixed, one branch can be invalid there (an exported ``if x.dim() == 3`` or an
``If`` on the sample rate whose other path expects another frame size: ONNX
Runtime fails too if that branch runs). :func:`_tolerant_subgraph` lets such a
branch fail at run time instead of failing the import: it becomes an
``assert_op`` that names the branch and the error, typed like its sibling.
"""

from __future__ import annotations

import functools

from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend
from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter, OnnxOpConverter, onnx_input

from mcc.errors import first_line
from mcc.frontends.onnx_ops import convert_map, register
from mcc.frontends.onnx_ops._relax import shape_of

op = relax.op


def convert_body(bb, graph, bindings: dict, outer: dict, opset: int) -> list:
    """Emit ``graph``'s nodes with its inputs bound to ``bindings``; its output values."""
    parser = ONNXGraphImporter({}, {})
    values = dict(outer)
    values.update(bindings)
    for init in graph.initializer:
        values[init.name] = relax.const(parser._parse_array(init))
    converters = convert_map()
    for node in graph.node:
        attr = parser._parse_attr(node.attribute)
        attr["tvm_custom"] = {"name": node.name, "num_outputs": len(node.output)}
        inputs = onnx_input()
        for name in node.input:
            inputs.append(values[name] if name else None)
        if node.op_type == "If":
            result = _convert_if(bb, inputs[0], attr, values, opset)
        elif node.op_type not in converters:
            raise ValueError(f"{node.op_type} inside a Scan/Loop body is not supported")
        else:
            result = converters[node.op_type].get_converter(opset)(bb, inputs, attr,
                                                                    [values, {}])
        result = bb.normalize(result) if isinstance(result, relax.Expr) else result
        if len(node.output) == 1:
            values[node.output[0]] = result
        else:
            for i, name in enumerate(node.output):
                values[name] = bb.normalize(relax.TupleGetItem(result, i))
    return [values[o.name] for o in graph.output]


def _convert_if(bb, cond, attr, values: dict, opset: int):
    """A nested ``If``: each branch in its own block, so only the taken one runs."""
    if bb.current_block_is_dataflow():
        raise ValueError("If inside a Scan body is not supported")
    branches = []
    for key in ("then_branch", "else_branch"):
        bb._begin_binding_block()
        try:
            outs = convert_body(bb, attr[key], {}, values, opset)
            result = outs[0] if len(outs) == 1 else relax.Tuple(outs)
            result = bb.normalize(result)
        finally:
            block = bb._end_block()
        branches.append(relax.SeqExpr([block], result))
    if cond.ty.ndim != 0:
        cond = bb.normalize(op.reshape(cond, []))
    return bb.emit(relax.If(cond, *branches))


@register("Scan")
class Scan(OnnxOpConverter):
    @classmethod
    def get_converter(cls, opset):
        if opset < 9:
            raise ValueError("Scan before opset 9 (with a batch axis) is not supported")
        return functools.partial(cls._convert, opset=opset)

    @classmethod
    def _convert(cls, bb, inputs, attr, params, opset):
        body = attr["body"]
        scans = attr["num_scan_inputs"]
        states = list(inputs[: len(inputs) - scans])
        xs = list(inputs[len(inputs) - scans:])
        in_axes = list(attr.get("scan_input_axes", [0] * scans))
        in_dirs = list(attr.get("scan_input_directions", [0] * scans))
        n_out = len(body.output) - len(states)
        out_axes = list(attr.get("scan_output_axes", [0] * n_out))
        out_dirs = list(attr.get("scan_output_directions", [0] * n_out))
        ranks = [len(shape_of(x)) for x in xs]
        in_axes = [a + r if a < 0 else a for a, r in zip(in_axes, ranks)]
        length = shape_of(xs[0])[in_axes[0]]
        names = [i.name for i in body.input]
        steps = [[] for _ in range(n_out)]
        for t in range(length):
            slices = []
            for x, axis, direction in zip(xs, in_axes, in_dirs):
                k = length - 1 - t if direction else t
                slices.append(bb.normalize(op.squeeze(
                    op.strided_slice(x, [axis], [k], [k + 1]), [axis])))
            outs = convert_body(bb, body, dict(zip(names, states + slices)), params[0], opset)
            states = outs[: len(states)]
            for i, value in enumerate(outs[len(states):]):
                steps[i].append(value)
        stacked = []
        for values, axis, direction in zip(steps, out_axes, out_dirs):
            if direction:
                values = values[::-1]
            rank = len(shape_of(values[0])) + 1
            stacked.append(bb.normalize(op.stack(values, axis=axis + rank if axis < 0
                                                 else axis)))
        results = states + stacked
        return results[0] if len(results) == 1 else relax.Tuple(results)


def _branch_key(graph) -> tuple:
    """Identifies an If branch by value (names are unique in an ONNX model)."""
    return (graph.name, tuple(o.name for o in graph.output),
            tuple(name for node in graph.node for name in node.output))


def _if_siblings(graph, table: dict | None = None) -> dict:
    """Branch key -> (the other branch, the If node's name), for every If at any depth."""
    table = {} if table is None else table
    for node in graph.node:
        branches = {a.name: a.g for a in node.attribute if a.HasField("g")}
        if node.op_type == "If" and len(branches) == 2:
            then, other = branches["then_branch"], branches["else_branch"]
            table[_branch_key(then)] = (other, node.name, "then_branch")
            table[_branch_key(other)] = (then, node.name, "else_branch")
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else list(attr.graphs)):
                _if_siblings(sub, table)
    return table


_tvm_from_onnx = ONNXGraphImporter.from_onnx
_tvm_convert_subgraph = ONNXGraphImporter._convert_subgraph


def _mcc_active() -> bool:
    return onnx_frontend._get_convert_map is convert_map  # inside extended_convert_map


def _from_onnx(self, graph, opset):
    if _mcc_active():
        self._mcc_if_siblings = _if_siblings(graph)
    return _tvm_from_onnx(self, graph, opset)


def _tolerant_subgraph(self, bb, graph):
    """TVM's branch conversion; a branch that fails while its sibling converts becomes a
    run-time error (the sibling's value keeps the If's type)."""
    try:
        return _tvm_convert_subgraph(self, bb, graph)
    except Exception as err:
        found = getattr(self, "_mcc_if_siblings", {}).get(_branch_key(graph))
        if not _mcc_active() or found is None:
            raise
        sibling, node_name, which = found
        try:
            value = _tvm_convert_subgraph(self, bb, sibling)
        except Exception:
            raise err from None
        message = (f"ONNX If '{node_name or 'If'}': its {which} cannot run at the compiled "
                   f"input shapes ({first_line(err)})")
        check = relax.Var("branch_check", relax.TupleType([]))
        fail = relax.op.assert_op(relax.const(False), format=message)
        return relax.SeqExpr([relax.BindingBlock([relax.VarBinding(check, fail)])], value)


if not getattr(ONNXGraphImporter, "_mcc_tolerant_if", False):
    ONNXGraphImporter.from_onnx = _from_onnx
    ONNXGraphImporter._convert_subgraph = _tolerant_subgraph
    ONNXGraphImporter._mcc_tolerant_if = True
