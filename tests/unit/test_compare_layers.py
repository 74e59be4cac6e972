"""mcc compare's pieces that need no build: which tensors are marked (and in what order),
the per-tensor error figures, and where the culprit is."""

import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import graph_model
from mcc.errors import MccError
from mcc.verify.layers import CompareReport, diff_layers, diff_tensor, find_culprit
from mcc.verify.marking import mark_layers


def _shape_chain_model():
    """x -> Relu -> (Shape -> Reshape target) -> Reshape -> ArgMax: activations, shape
    arithmetic and an int64 output."""
    return graph_model(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Shape", ["r"], ["s"], name="shape"),
         helper.make_node("Concat", ["s", "extra"], ["s2"], axis=0, name="concat"),
         helper.make_node("Reshape", ["r", "s2"], ["rr"], name="reshape"),
         helper.make_node("Mul", ["w", "w"], ["ww"], name="weights_only"),
         helper.make_node("Add", ["rr", "ww"], ["a"], name="add"),
         helper.make_node("ArgMax", ["a"], ["idx"], axis=1, name="argmax")],
        [("x", TensorProto.FLOAT, [2, 3])], [("idx", TensorProto.INT64, [2, 1, 1])],
        [("extra", np.array([1], np.int64)), ("w", np.ones((2, 3, 1), np.float32))])


def test_marks_activations_in_graph_order_not_shapes_or_weights():
    marked = mark_layers(_shape_chain_model())
    assert [layer.tensor for layer in marked.layers] == ["r", "rr", "a", "idx"]
    assert [layer.index for layer in marked.layers] == [0, 1, 2, 3]
    assert [o.name for o in marked.model.graph.output] == ["idx", "r", "rr", "a"]
    by_name = {layer.tensor: layer for layer in marked.layers}
    assert by_name["r"].feeds == ("",) and by_name["rr"].feeds == ("r",)
    assert by_name["idx"].op == "ArgMax" and by_name["idx"].node == "argmax"
    assert marked.candidates == 4 and marked.untyped == 0


def test_layers_filter_keeps_model_outputs_and_nearest_feeds():
    marked = mark_layers(_shape_chain_model(), ("relu", "ArgMax"))
    assert [layer.tensor for layer in marked.layers] == ["r", "idx"]
    assert marked.layers[1].feeds == ("r",)  # through the unmarked rr and a
    assert [layer.tensor for layer in mark_layers(_shape_chain_model(), ("add",)).layers] == \
        ["a", "idx"]


def test_unknown_layers_selection_is_one_line_naming_it():
    with pytest.raises(MccError, match="--layers 'Convv' matches no op type.*ArgMax"):
        mark_layers(_shape_chain_model(), ("Convv",))


def test_float_figures_and_exact_int_figures():
    e = np.array([1.0, 2.0, 2.0], np.float32)
    same = diff_tensor(e, e)
    assert same["rel_err"] == 0 and same["cosine"] == pytest.approx(1.0) and not same["exact"]
    off = diff_tensor(e + np.array([0, 0, 0.3], np.float32), e)
    assert off["rel_err"] == pytest.approx(0.1, rel=1e-5) and off["max_abs"] == pytest.approx(0.3)
    ints = diff_tensor(np.array([1, 2, 3, 4]), np.array([1, 2, 3, 5]))
    assert ints["exact"] and ints["cosine"] is None and ints["rel_err"] == 0.25
    assert diff_tensor(np.array([True, False]), np.array([True, False]))["rel_err"] == 0
    dtype = diff_tensor(np.array([1, 2], np.int32), np.array([1, 2], np.int64))
    assert dtype["rel_err"] == 1.0 and dtype["note"] == "dtype int32 vs int64"
    shape = diff_tensor(np.zeros((2, 3)), np.zeros((3, 2)))
    assert math.isinf(shape["rel_err"]) and shape["note"] == "shape [2, 3] vs [3, 2]"
    nan = diff_tensor(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    assert math.isinf(nan["rel_err"]) and "NaN" in nan["note"]
    assert diff_tensor(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))["rel_err"] == 0


def _report(errors, threshold=1e-3):
    """A report over a chain of layers whose expected outputs are ones and whose actual
    outputs have the given relative errors."""
    from mcc.verify.marking import Layer

    layers = [Layer(i, f"t{i}", f"n{i}", "Conv", (f"t{i - 1}" if i else "",))
              for i in range(len(errors))]
    expected = {f"t{i}": np.ones(100) for i in range(len(errors))}
    actual = {f"t{i}": np.ones(100) * (1 + err) for i, err in enumerate(errors)}
    return CompareReport("m.onnx", "onnxruntime fp32", "target x86", "inputs",
                         diff_layers(layers, actual, expected), threshold, per_layer=True)


def test_culprit_is_the_first_jump_over_the_threshold():
    report = _report([1e-6, 5e-4, 3e-3, 4e-3, 5e-2])
    assert report.culprit.tensor == "t2"  # 5e-4 -> 3e-3: over 1e-3 and more than doubled
    assert [d.tensor for d in report.worst(2)] == ["t4", "t2"]  # most error added first
    assert report.layers[4].input_err == pytest.approx(4e-3)
    assert _report([1e-6, 2e-6]).culprit is None
    drift = _report([9e-4, 1.1e-3, 1.3e-3])  # over the threshold, but never a jump
    assert drift.culprit.tensor == "t1"
    assert find_culprit([], 1e-3) is None


def test_report_json_and_lines():
    report = _report([1e-6, 2e-2])
    data = json.loads(json.dumps(report.to_json()))
    assert set(data) == {"model", "reference", "build", "inputs", "per_layer", "threshold",
                         "culprit", "layers", "notes", "seconds"}
    assert [d["index"] for d in data["layers"]] == [0, 1]
    assert set(data["layers"][0]) == {"index", "tensor", "node", "op", "shape", "dtype",
                                      "cosine", "max_abs", "rel_err", "input_err",
                                      "added_err", "exact", "note"}
    assert data["culprit"]["tensor"] == "t1"
    lines = report.lines(top=1)
    assert lines[1].startswith("culprit: #1 Conv 'n1' -> 't1': rel err 0.02")
    assert len(lines) == 5 and lines[-1].split()[:3] == ["1", "Conv", "n1"]  # one row
