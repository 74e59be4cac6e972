"""Verification of models with bfloat16 / float8 / int4 inputs or outputs: ONNX Runtime's
Python API cannot take or return those, so the reference casts inside (ort_boundary)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper

import mcc
from mcc.driver.sample_data import load_verify_feed
from mcc.runtime.tensors import TensorSpec


def cast_model(src: int, dst: int, opset: int = 21) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=dst)], "cast",
        [helper.make_tensor_value_info("x", src, [2, 3])],
        [helper.make_tensor_value_info("y", dst, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def test_bfloat16_and_float8_outputs_and_inputs_are_verified():
    for src, dst in ((TensorProto.FLOAT, TensorProto.BFLOAT16),
                     (TensorProto.FLOAT, TensorProto.FLOAT8E4M3FN),
                     (TensorProto.BFLOAT16, TensorProto.FLOAT),
                     (TensorProto.FLOAT8E5M2, TensorProto.FLOAT)):
        compiled = mcc.compile(cast_model(src, dst))  # synthetic inputs, vs ONNX Runtime
        assert "skipped" not in compiled.report["verify"], (src, dst, compiled.report["verify"])


def test_int4_input_is_verified():
    compiled = mcc.compile(cast_model(TensorProto.INT4, TensorProto.FLOAT))
    assert "skipped" not in compiled.report["verify"], compiled.report["verify"]
    x = np.array([[1, -2, 3], [7, -8, 0]], ml_dtypes.int4)
    np.testing.assert_array_equal(compiled.run({"x": x})["y"], [[1, -2, 3], [7, -8, 0]])


def test_verify_inputs_npz_holds_bfloat16(tmp_path):
    x = np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16)
    np.savez(tmp_path / "feed.npz", x=x)  # stored as raw 2-byte records
    feed = load_verify_feed(tmp_path / "feed.npz", [TensorSpec("x", (2,), "bfloat16")])
    assert feed["x"].dtype == x.dtype
    np.testing.assert_array_equal(feed["x"].astype(np.float32), [1.5, -2.0])
