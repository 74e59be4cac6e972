"""ONNX Runtime's Python API takes and returns only numpy's own dtypes: a model whose
inputs or outputs are bfloat16, float8, float4 or int4/int2 cannot be fed or read
(``No corresponding Numpy type for Tensor Type``). For the verification reference,
mcc wraps such a model: each such input becomes float32 (floats) or int8/uint8
(sub-byte ints, as mcc holds them) with a ``Cast`` to the declared type inside,
and each such output gets a ``Cast`` to float32 / int8 / uint8 that is converted
back in numpy (ml_dtypes) to what the compiled module returns. The casts are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# elem types numpy cannot hold -> the numpy-side elem type ORT sees instead
_FLOAT = 1
_INT8, _UINT8 = 3, 2
_WIDE = {16: _FLOAT, 17: _FLOAT, 18: _FLOAT, 19: _FLOAT, 20: _FLOAT, 23: _FLOAT, 24: _FLOAT,
         21: _UINT8, 22: _INT8, 25: _UINT8, 26: _INT8}
_SUFFIX = "__mcc_numpy"


@dataclass
class NumpyBoundary:
    """A model ORT can run with numpy arrays, and how to convert feeds and results."""

    model: bytes
    inputs: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (new, elem)
    outputs: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (new, elem)

    def feed(self, feed: dict) -> dict:
        out = {}
        for name, value in feed.items():
            if name not in self.inputs:
                out[name] = value
                continue
            new, elem = self.inputs[name]
            array = np.asarray(value)
            if elem == 23 and array.dtype == np.uint8:  # float4 held as its bits
                import ml_dtypes

                array = array.view(ml_dtypes.float4_e2m1fn)
            wide = np.float32 if _WIDE[elem] == _FLOAT else array.dtype
            out[new] = array.astype(wide)
        return out

    def fetch_names(self, names: list[str]) -> list[str]:
        return [self.outputs[n][0] if n in self.outputs else n for n in names]

    def result(self, name: str, value):
        if name not in self.outputs:
            return value
        from onnx import helper

        elem = self.outputs[name][1]
        if _WIDE[elem] != _FLOAT:
            return value  # int4/int2: mcc returns them widened to int8/uint8 as well
        narrow = value.astype(helper.tensor_dtype_to_np_dtype(elem))
        if elem == 23:  # float4: mcc holds the bits, one per byte
            return narrow.view(np.uint8)
        return narrow


def numpy_boundary(raw: bytes) -> NumpyBoundary:
    """``raw`` unchanged when every input and output has a numpy dtype, else wrapped."""
    import onnx
    from onnx import helper

    proto = onnx.ModelProto()
    proto.ParseFromString(raw)
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}

    def elem(vi) -> int:
        return vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0

    wrapped = NumpyBoundary(raw)
    casts_in = []
    for vi in graph.input:
        if vi.name in initializers or elem(vi) not in _WIDE:
            continue
        original, kind = vi.name, elem(vi)
        wrapped.inputs[original] = (original + _SUFFIX, kind)
        vi.name = original + _SUFFIX
        vi.type.tensor_type.elem_type = _WIDE[kind]
        casts_in.append(helper.make_node("Cast", [vi.name], [original], to=kind))
    for vi in graph.output:
        if elem(vi) not in _WIDE:
            continue
        original, kind = vi.name, elem(vi)
        wrapped.outputs[original] = (original + _SUFFIX, kind)
        graph.node.append(helper.make_node("Cast", [original], [original + _SUFFIX],
                                           to=_WIDE[kind]))
        vi.name = original + _SUFFIX
        vi.type.tensor_type.elem_type = _WIDE[kind]
    if not wrapped.inputs and not wrapped.outputs:
        return wrapped
    nodes = casts_in + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    wrapped.model = proto.SerializeToString()
    return wrapped
