"""Model-aware synthetic verification inputs (mcc.frontends.feeds), the --verify-inputs reader and
the output comparison's handling of infinities."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import graph_model, tiny_bert
from mcc.driver.sample_data import load_verify_feed
from mcc.errors import MccError
from mcc.frontends.feeds import FeedPlan, feed_plan, rejected_message
from mcc.runtime.tensors import TensorSpec, random_inputs
from mcc.verify.compare import compare_output

INT64 = TensorProto.INT64


def specs_of(model):
    return [TensorSpec(vi.name, tuple(d.dim_value or d.dim_param
                                      for d in vi.type.tensor_type.shape.dim),
                       {INT64: "int64", TensorProto.INT32: "int32",
                        TensorProto.FLOAT: "float32"}[vi.type.tensor_type.elem_type])
            for vi in model.graph.input]


def feeds(model, seeds=20, symbolic_size=16):
    plan = feed_plan(model)
    return plan, [random_inputs(specs_of(model), seed=s, symbolic_size=symbolic_size,
                                rules=plan.rules) for s in range(seeds)]


def test_bert_inputs_get_index_and_mask_ranges():
    plan, fed = feeds(tiny_bert())
    assert (plan.rules["input_ids"].low, plan.rules["input_ids"].high) == (0, 30)
    assert (plan.rules["token_type_ids"].low, plan.rules["token_type_ids"].high) == (0, 2)
    assert (plan.rules["attention_mask"].low, plan.rules["attention_mask"].high) == (0, 2)
    ids = np.concatenate([f["input_ids"].ravel() for f in fed])
    assert ids.min() >= 0 and ids.max() < 30 and ids.max() >= 10  # the whole table, not [0,10)
    for name in ("token_type_ids", "attention_mask"):
        values = np.concatenate([f[name].ravel() for f in fed])
        assert set(values.tolist()) == {0, 1}
    # the node an error names leads back to the input that feeds it
    assert plan.inputs_reaching("type_gather") == ["token_type_ids"]


def test_integer_div_and_mod_divisors_are_never_zero():
    i32 = TensorProto.INT32
    model = graph_model(
        [helper.make_node("Mod", ["a", "b"], ["m"]),
         helper.make_node("Cast", ["c"], ["c32"], to=i32),
         helper.make_node("Unsqueeze", ["c32", "ax"], ["c2"]),
         helper.make_node("Div", ["a", "c2"], ["d"]),
         helper.make_node("Add", ["m", "d"], ["y"])],
        [("a", i32, [4, 5]), ("b", i32, [4, 5]), ("c", INT64, [4])],
        [("y", i32, [4, 5])], [("ax", np.array([1], np.int64))])
    plan, fed = feeds(model, seeds=50)
    assert plan.rules["b"].nonzero and plan.rules["c"].nonzero
    assert "a" not in plan.rules  # a dividend keeps the old rule
    for feed in fed:
        assert (feed["b"] != 0).all() and (feed["c"] != 0).all()
        assert feed["b"].dtype == np.int32 and feed["b"].min() >= 0 and feed["b"].max() < 10


def test_slice_steps_axes_and_shifted_indices():
    model = graph_model(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
         helper.make_node("Add", ["pos", "three"], ["p3"]),
         helper.make_node("GatherElements", ["x", "p3"], ["g"], axis=1),
         helper.make_node("Mul", ["s", "g"], ["y"])],
        [("x", TensorProto.FLOAT, [5, 7]), ("starts", INT64, [2]), ("ends", INT64, [2]),
         ("axes", INT64, [2]), ("steps", INT64, [2]), ("pos", INT64, [5, 7])],
        [("y", TensorProto.FLOAT, None)], [("three", np.array(3, np.int64))])
    plan, fed = feeds(model)
    for feed in fed:
        assert (feed["steps"] >= 1).all()
        assert feed["axes"].tolist() == [0, 1]  # distinct, within the rank
        assert ((feed["pos"] + 3 >= 0) & (feed["pos"] + 3 < 7)).all()
    assert "starts" not in plan.rules  # any start is clamped: the old rule stays


def test_onehot_and_loss_labels_stay_in_range():
    model = graph_model(
        [helper.make_node("OneHot", ["idx", "depth", "values"], ["oh"]),
         helper.make_node("SoftmaxCrossEntropyLoss", ["scores", "labels"], ["loss"])],
        [("idx", INT64, [6]), ("scores", TensorProto.FLOAT, [3, 4]), ("labels", INT64, [3])],
        [("oh", TensorProto.FLOAT, None), ("loss", TensorProto.FLOAT, None)],
        [("depth", np.array(3, np.int64)), ("values", np.array([0, 1], np.float32))])
    plan, fed = feeds(model)
    for feed in fed:
        assert feed["idx"].max() < 3 and feed["labels"].max() < 4
        assert feed["idx"].min() >= 0 and feed["labels"].min() >= 0


def test_shape_operands_get_values_valid_for_any_input():
    model = graph_model(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1)],
        [("x", TensorProto.FLOAT, [2, 6]), ("shape", INT64, [3]), ("k", INT64, [1])],
        [("r", TensorProto.FLOAT, None), ("v", TensorProto.FLOAT, None)])
    _, fed = feeds(model, seeds=3)
    assert fed[0]["shape"].tolist() == [-1, 1, 1] and fed[0]["k"].tolist() == [1]


def test_inputs_nothing_is_known_about_keep_the_old_values():
    """Same seeded values as before for inputs no rule covers (and floats)."""
    model = graph_model([helper.make_node("Neg", ["a"], ["y"])], [("a", INT64, [3, 4])],
                        [("y", INT64, [3, 4])])
    specs = specs_of(model)
    assert feed_plan(model).rules == {}
    np.testing.assert_array_equal(random_inputs(specs, seed=3, rules={})["a"],
                                  random_inputs(specs, seed=3)["a"])


def test_unreadable_graph_gives_an_empty_plan():
    assert feed_plan(object()).rules == {}


def test_rejected_message_names_the_input_and_the_way_out():
    plan = feed_plan(tiny_bert())
    err = RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code "
                       "returned while running Gather node. Name:'type_gather' Status Message: "
                       "indices element out of data bounds, idx=7")
    text = rejected_message(err, "onnxruntime", plan, specs_of(tiny_bert()), None)
    assert "'token_type_ids' (ints in [0, 2))" in text and "input_ids" not in text
    assert "--verify-inputs FILE.npz" in text and "idx=7" in text and "\n" not in text
    # nothing known about the node: every integer input is named
    text = rejected_message(ValueError("bad"), "pytorch", FeedPlan(), specs_of(tiny_bert()),
                            None)
    assert "'input_ids'" in text and "'token_type_ids'" in text


# --verify-inputs files -------------------------------------------------------------------

BERT_SPECS = [TensorSpec(n, ("batch", "seq"), "int64")
              for n in ("input_ids", "attention_mask", "token_type_ids")]


def test_verify_feed_keeps_a_whole_batch(tmp_path):
    arrays = {n: np.arange(6, dtype=np.int64).reshape(2, 3) % 2 for n in
              ("input_ids", "attention_mask", "token_type_ids")}
    np.savez(tmp_path / "in.npz", **arrays)
    feed = load_verify_feed(tmp_path / "in.npz", BERT_SPECS)
    assert feed["input_ids"].shape == (2, 3)


def test_verify_feed_from_a_samples_file_is_its_first_sample(tmp_path):
    specs = [TensorSpec("x", (1, 3), "float32")]
    np.savez(tmp_path / "s.npz", x=np.arange(12, dtype=np.float32).reshape(4, 3))
    np.testing.assert_array_equal(load_verify_feed(tmp_path / "s.npz", specs)["x"],
                                  [[0, 1, 2]])


@pytest.mark.parametrize("arrays, fragment", [
    ({"input_ids": np.zeros((1, 3), np.int32)}, "no array for input 'attention_mask'"),
    ({n: np.zeros((1, 3), np.int32) for n in ("input_ids", "attention_mask",
                                               "token_type_ids")},
     "input 'input_ids' has dtype int32, expected int64"),
])
def test_bad_verify_feed_names_the_input(tmp_path, arrays, fragment):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(MccError, match=fragment):
        load_verify_feed(tmp_path / "bad.npz", BERT_SPECS)


def test_verify_feed_is_never_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", input_ids=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MccError, match="not a readable NumPy file"):
        load_verify_feed(tmp_path / "obj.npz", BERT_SPECS)


def test_missing_verify_feed():
    with pytest.raises(MccError, match="not found"):
        load_verify_feed("/nonexistent/in.npz", BERT_SPECS)


# infinities in outputs -------------------------------------------------------------------

def test_matching_infinities_are_equal():
    a = np.array([1.0, np.inf, -np.inf, np.nan], np.float32)
    result = compare_output("y", a, a.copy(), 1e-4, 1e-4)
    assert result.ok and result.max_abs == 0.0


@pytest.mark.parametrize("actual", [
    [1.0, -np.inf, -np.inf],  # sign flipped
    [1.0, 3.0, -np.inf],  # a finite value where the reference has inf
    [np.inf, np.inf, -np.inf],  # an inf where the reference is finite
])
def test_mismatched_infinities_fail(actual):
    expected = np.array([1.0, np.inf, -np.inf])
    result = compare_output("y", np.array(actual), expected, 1e-4, 1e-4)
    assert not result.ok and "infinities" in result.detail
