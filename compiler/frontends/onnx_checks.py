"""Checks of an ONNX file before mcc trusts it: external data that stays inside the
model's folder and exists, and an opset this ONNX (and ONNX Runtime) knows."""

from __future__ import annotations

import os
from pathlib import Path

from mcc.errors import MccError, first_line


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def load_onnx_file(path: Path):
    """onnx.load(path), with external data checked first: every location must name an
    existing file inside the model's folder, and the ranges must lie inside it."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    proto = onnx.load(str(path), load_external_data=False)
    folder = path.resolve().parent
    external = False
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        external = True
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(folder):
            raise MccError(f"'{path}': tensor '{tensor.name}' names external data "
                           f"'{location}' outside the model's folder; refusing to read it")
        if not target.is_file():
            raise MccError(f"'{path}': external data file '{location}' of tensor "
                           f"'{tensor.name}' not found beside the model")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", 0) or 0)
        except ValueError:
            raise MccError(f"'{path}': tensor '{tensor.name}' has a malformed external data "
                           f"offset/length") from None
        if offset < 0 or length < 0 or offset + length > target.stat().st_size:
            raise MccError(f"'{path}': external data of tensor '{tensor.name}' "
                           f"(offset {offset}, length {length}) runs past the end of "
                           f"'{location}' ({target.stat().st_size} bytes)")
    if external:
        try:
            load_external_data_for_model(proto, str(folder))
        except Exception as err:  # onnx's own checks: a ValidationError, OSError ...
            raise MccError(f"'{path}': cannot read its external data: "
                           f"{first_line(err)}") from None
    return proto


def check_opset(proto, label: str) -> None:
    """MccError for an ai.onnx opset newer than this ONNX release knows."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx") and not 1 <= entry.version <= newest:
            raise MccError(f"'{label}' claims ONNX opset {entry.version}; mcc supports "
                           f"opsets 1 to {newest}")


# (op, input position) that read only a tensor's type or shape, never its elements
_TYPE_OR_SHAPE_ONLY = {("CastLike", 1), ("Shape", 0), ("Size", 0)}


def _read_for_values(graph) -> set[str]:
    """Names some node of ``graph`` (subgraphs included) reads the elements of."""
    names = set()
    for node in graph.node:
        for pos, name in enumerate(node.input):
            if (node.op_type, pos) not in _TYPE_OR_SHAPE_ONLY:
                names.add(name)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                names |= _read_for_values(sub)
    names.update(out.name for out in graph.output)
    return names


def check_zero_dims(graph, graph_inputs, input_shapes: dict, label: str) -> None:
    """MccError for a graph input declaring a 0-size dimension (not fixed by --input-shape)
    whose elements the model reads: an empty tensor that only gives a type or a shape
    (CastLike's target, Shape, Size) is fine."""
    read = _read_for_values(graph)
    for vi in graph_inputs:
        if vi.name in input_shapes or vi.name not in read:
            continue
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value <= 0:
                shape = ",".join(str(x.dim_value) if x.HasField("dim_value")
                                 else (x.dim_param or "?") for x in dims)
                raise MccError(f"input '{vi.name}' of '{label}' has a {d.dim_value}-size "
                               f"dimension (axis {axis}, shape [{shape}]); mcc compiles "
                               f"non-empty inputs only (set it with --input-shape "
                               f"{vi.name}=...)")
