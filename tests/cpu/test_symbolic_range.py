"""Range over symbolic input dims (position ids of BERT exports): its length is
derived from the dims, so a model keeps ``batch`` / ``seq`` symbolic end to end."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import graph_model, tiny_bert


def _feed(rng, batch, seq):
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0
    return {"input_ids": rng.integers(0, 30, (batch, seq)), "attention_mask": mask,
            "token_type_ids": rng.integers(0, 2, (batch, seq))}


def test_bert_position_ids_compile_with_symbolic_dims(save_onnx, tmp_path):
    """Range(0, Shape(input_ids)[1]) used to get a fresh length var range_len_0: the
    position embedding no longer lined up with (batch, seq, 8) and the build failed."""
    import mcc

    path = save_onnx(tiny_bert(positions=True), "bert_pos.onnx")
    compiled = mcc.compile(path)  # default options: no input shapes, verified vs ORT
    assert compiled.report["verify"]["reference"] == "onnxruntime"
    assert compiled.report["verify"]["ok"]
    out = tmp_path / "bert_pos.so"
    compiled.export(out)
    module = mcc.load(out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch, seq in [(1, 5), (3, 13)]:
        feed = _feed(rng, batch, seq)
        got = module.run(feed)["y"]
        want = session.run(["y"], feed)[0]
        assert got.shape == (batch, seq, 8)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _range_model(start, limit, delta, dims=("n",)):
    """Range(start, limit, delta) where a str operand is that dim of input x."""
    nodes, inits = [helper.make_node("Shape", ["x"], ["xs"])], []
    names = []
    for i, v in enumerate((start, limit, delta)):
        if isinstance(v, str):
            nodes.append(helper.make_node("Gather", ["xs", f"ax{i}"], [f"op{i}"], axis=0))
            inits.append((f"ax{i}", np.array(dims.index(v), np.int64)))
        else:
            inits.append((f"op{i}", np.array(v, np.int64)))
        names.append(f"op{i}")
    nodes.append(helper.make_node("Range", names, ["y"]))
    return graph_model(nodes, [("x", TensorProto.FLOAT, list(dims))],
                       [("y", TensorProto.INT64, ["m"])], inits)


@pytest.mark.parametrize("start,limit,delta,expect", [
    (0, "n", 1, "(n,)"),
    (2, "n", 1, None),  # n - 2 may be negative (ONNX: empty): TVM's converter
    ("n", 0, -1, "(n,)"),
    (0, "n", 3, "((n + 2) // 3,)"),
])
def test_range_length_is_an_expression_of_the_dims(start, limit, delta, expect):
    from mcc.frontends.onnx_import import import_onnx

    text = import_onnx(_range_model(start, limit, delta), {}).mod["main"].script()
    if expect is None:
        assert "range_len" in text
    else:
        assert "range_len" not in text
        assert f"R.Tensor({expect}" in text, text


@pytest.mark.parametrize("n", [1, 4, 7])
def test_symbolic_range_values_match_onnxruntime(save_onnx, n):
    import mcc

    model = _range_model("n", 0, -2)
    path = save_onnx(model, "range.onnx")
    compiled = mcc.compile(path, verify=False)
    x = np.zeros((n,), np.float32)
    got = compiled.run({"x": x})["y"]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["y"], {"x": x})[0]
    np.testing.assert_array_equal(got, want)
