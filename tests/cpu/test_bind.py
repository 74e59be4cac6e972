"""--bind / bind=: shape operands that arrive as graph inputs become constants."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import mcc
from conftest import assert_one_line_error
from mcc.driver.bind import parse_bind
from mcc.errors import MccError

X = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)


def operand_model() -> onnx.ModelProto:
    """TopK with k and ReduceSum with axes as graph inputs (int64[1], int64[2])."""
    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1),
         helper.make_node("ReduceSum", ["x", "axes"], ["sum"], keepdims=0)], "operands",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 4]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("values", TensorProto.FLOAT, [3, "k", 4]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [3, "k", 4]),
         helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["s"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def ort_outputs(model, k, axes):
    session = ort.InferenceSession(model.SerializeToString())
    feed = {"x": X, "k": np.array(k, np.int64), "axes": np.array(axes, np.int64)}
    return dict(zip(("values", "indices", "sum"), session.run(None, feed)))


def assert_matches(outputs, expected):
    for name, ref in expected.items():
        assert outputs[name].shape == ref.shape, name
        np.testing.assert_allclose(outputs[name], ref, rtol=1e-5, atol=1e-5, err_msg=name)


def test_bind_api(save_onnx):
    model = operand_model()
    compiled = mcc.compile(save_onnx(model), bind={"k": [2], "axes": np.array([0, 2])})
    assert [t.name for t in compiled.inputs] == ["x"]  # the bound inputs are gone
    assert_matches(compiled.run({"x": X}), ort_outputs(model, [2], [0, 2]))


def test_bind_cli(save_onnx, cli, tmp_path):
    model = operand_model()
    out = tmp_path / "m.so"
    result = cli("compile", save_onnx(model), "-o", out, "--bind", "k=3", "--bind", "axes=1,2")
    assert result.exit_code == 0, result.output
    module = mcc.load(out)
    assert [t.name for t in module.inputs] == ["x"]
    assert_matches(module.run({"x": X}), ort_outputs(model, [3], [1, 2]))


def test_bind_errors(save_onnx, cli):
    path = save_onnx(operand_model())
    error = assert_one_line_error(cli("compile", path, "--bind", "kk=3"), "'kk'")
    assert "x, k, axes" in error  # the valid names
    assert_one_line_error(cli("compile", path, "--bind", "k=three"), "--bind", "numbers")
    assert_one_line_error(cli("compile", path, "--bind", "k"), "NAME=V1,V2")
    assert_one_line_error(cli("compile", path, "--bind", "k=1.5"), "k", "int64")
    assert_one_line_error(cli("compile", path, "--bind", "k=1,2"), "2 values", "[1]")
    with pytest.raises(MccError, match="values must be numbers"):
        mcc.compile(path, bind={"k": ["a"]})


def test_parse_bind():
    bound = parse_bind(["k=3", "scale=0.5,2", "empty="])
    assert bound["k"].dtype == np.int64 and bound["k"].tolist() == [3]
    assert bound["scale"].dtype == np.float64 and bound["scale"].tolist() == [0.5, 2.0]
    assert bound["empty"].shape == (0,)


def test_node_test_through_public_api(tmp_path):
    """benchmarks/onnx_node_tests_api.py's step: TopK's k arrives as an input, is bound."""
    from mcc.verify.conformance import node_cases, run_case_api

    result = run_case_api(node_cases()["test_top_k"], tmp_path)
    assert (result.status, result.reason, result.specialized) == ("pass", "", True)
