"""Sub-byte tensors (ONNX INT4, UINT4, INT2, UINT2, FLOAT4E2M1) stored one per byte.

TVM's runtime cannot hold packed sub-byte tensors (its int4 arrays need a bit
count divisible by 8 to copy in or out), so mcc widens these types at import:
graph inputs, outputs and value infos become INT8/UINT8, and ``CastLike`` to
such a tensor becomes ``Cast`` with the narrow ``to`` type, which
:mod:`mcc.frontends.onnx_ops.low_precision` implements as ONNX does (truncate,
then wrap to the narrow range, held in int8/uint8). Values stay in range, so
any cast *from* the widened tensor is exact. The ONNX backend adapter converts
arrays at the boundary (:func:`mcc.runtime.tensors.to_storage`, :func:`from_storage`).
"""

from __future__ import annotations

import numpy as np

# ONNX element type -> (storage element type, signed, bits); FLOAT4E2M1 (23) is held as
# its 4-bit code in a uint8.
NARROW_INTS = {22: (3, True, 4), 21: (2, False, 4), 26: (3, True, 2), 25: (2, False, 2),
               23: (2, False, 4)}
FLOAT4E2M1 = 23
NARROW_DTYPES = {"int4": (True, 4), "uint4": (False, 4), "int2": (True, 2), "uint2": (False, 2)}


def _elem_types(graph) -> dict[str, int]:
    known = {}
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type"):
            known[vi.name] = vi.type.tensor_type.elem_type
    return known


def has_narrow_ints(proto) -> bool:
    return any(t in NARROW_INTS for t in _elem_types(proto.graph).values())


def widen_narrow_ints(proto):
    """A copy of ``proto`` with sub-byte integer tensors stored as int8/uint8."""
    if not has_narrow_ints(proto):
        return proto
    import onnx

    widened = onnx.ModelProto()
    widened.CopyFrom(proto)
    graph = widened.graph
    types = _elem_types(graph)
    for node in graph.node:
        if node.op_type == "Cast" and types.get(node.input[0]) == FLOAT4E2M1:
            node.attribute.append(onnx.helper.make_attribute("mcc_from", FLOAT4E2M1))
        if node.op_type == "CastLike" and types.get(node.input[0]) == FLOAT4E2M1:
            node.attribute.append(onnx.helper.make_attribute("mcc_from", FLOAT4E2M1))
        if node.op_type == "CastLike" and types.get(node.input[1]) in NARROW_INTS:
            to = types[node.input[1]]
            saturate = [a for a in node.attribute if a.name == "saturate"]
            node.op_type = "Cast"
            del node.input[1:]
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("to", to))
            node.attribute.extend(saturate)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tensor.elem_type in NARROW_INTS:
            tensor.elem_type = NARROW_INTS[tensor.elem_type][0]
    return widened


def narrow_output_types(proto) -> list[str | None]:
    """Per graph output, the ml_dtypes name it should be returned as (None: as computed)."""
    names = {22: "int4", 21: "uint4", 26: "int2", 25: "uint2", 23: "float4_e2m1fn"}
    out = []
    for vi in proto.graph.output:
        elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
        out.append(names.get(elem))
    return out


def from_storage(array: np.ndarray, dtype: str | None) -> np.ndarray:
    if dtype is None:
        return array
    import ml_dtypes

    if dtype == "float4_e2m1fn":
        return array.view(ml_dtypes.float4_e2m1fn)
    return array.astype(getattr(ml_dtypes, dtype))
