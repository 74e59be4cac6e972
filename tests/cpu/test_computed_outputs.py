"""Module.run returns every output: computed shapes (int64) and scalars, not only tensors."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import mcc


def _model(nodes, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "outputs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, t, d) for n, t, d in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_shape_is_the_only_output(tmp_path):
    model = _model([helper.make_node("Shape", ["x"], ["s"])], [("s", TensorProto.INT64, [2])])
    compiled = mcc.compile(model)  # verified against ONNX Runtime, which runs it too
    out = compiled.run({"x": X})
    assert out["s"].dtype == np.int64
    np.testing.assert_array_equal(out["s"], [2, 3])
    compiled.export(tmp_path / "m.so")
    np.testing.assert_array_equal(mcc.load(tmp_path / "m.so").run({"x": X})["s"], [2, 3])


def test_shape_scalar_and_tensor_outputs():
    index = helper.make_tensor("i", TensorProto.INT64, [], [1])
    model = _model(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("ReduceSum", ["x"], ["r"], keepdims=0),
         helper.make_node("Constant", [], ["i"], value=index),
         helper.make_node("Gather", ["s", "i"], ["d"]),  # a computed 0-d int64: a PrimValue
         helper.make_node("Relu", ["x"], ["y"])],
        [("s", TensorProto.INT64, [2]), ("r", TensorProto.FLOAT, []),
         ("d", TensorProto.INT64, []), ("y", TensorProto.FLOAT, [2, 3])])
    out = mcc.compile(model).run({"x": X})
    assert list(out) == ["s", "r", "d", "y"]
    np.testing.assert_array_equal(out["s"], [2, 3])
    assert out["r"].shape == () and out["r"].dtype == np.float32 and out["r"] == 15
    assert out["d"].shape == () and out["d"].dtype == np.int64 and out["d"] == 3
    np.testing.assert_array_equal(out["y"], X)


def test_scalar_is_the_only_output():
    index = helper.make_tensor("i", TensorProto.INT64, [], [0])
    model = _model([helper.make_node("Shape", ["x"], ["s"]),
                    helper.make_node("Constant", [], ["i"], value=index),
                    helper.make_node("Gather", ["s", "i"], ["d"])],
                   [("d", TensorProto.INT64, [])])
    out = mcc.compile(model).run({"x": X})
    assert out["d"].shape == () and out["d"].dtype == np.int64 and out["d"] == 2


def test_sub_byte_inputs_are_taken_as_they_come():
    """int4 / float4 arrays (ml_dtypes) are held one per byte by the module: run converts."""
    import ml_dtypes

    graph = helper.make_graph(
        [helper.make_node("Cast", ["a"], ["y"], to=TensorProto.INT8),
         helper.make_node("Cast", ["f"], ["z"], to=TensorProto.FLOAT)], "narrow",
        [helper.make_tensor_value_info("a", TensorProto.INT4, [4]),
         helper.make_tensor_value_info("f", TensorProto.FLOAT4E2M1, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 11
    a = np.array([-8, -1, 0, 7], dtype=ml_dtypes.int4)
    f = np.array([0.5, -1.5, 6.0], dtype=ml_dtypes.float4_e2m1fn)
    out = mcc.compile(model, verify=False).run({"a": a, "f": f})
    np.testing.assert_array_equal(out["y"], np.array([-8, -1, 0, 7], np.int8))
    np.testing.assert_array_equal(out["z"], np.array([0.5, -1.5, 6.0], np.float32))
