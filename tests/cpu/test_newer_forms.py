"""SpaceToDepth mode=CRD and TopK on unsigned ints (mcc.frontends.onnx_ops.newer_forms)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import mcc


def _model(node, inputs, outputs, opset, inits=()):
    graph = helper.make_graph([node], "m", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_space_to_depth_crd_matches_onnx_reference():
    model = _model(helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode="CRD"),
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 2, 3])], 28)
    x = np.arange(72, dtype=np.float32).reshape(1, 3, 4, 6)
    (ref,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(mcc.compile(model, verify=False).run({"x": x})["y"], ref)


def test_top_k_uint64_orders_values_above_int64_max():
    k = numpy_helper.from_array(np.array([3], np.int64), "k")
    model = _model(helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
                   [helper.make_tensor_value_info("x", TensorProto.UINT64, [2, 5])],
                   [helper.make_tensor_value_info("v", TensorProto.UINT64, [2, 3]),
                    helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3])], 13, [k])
    x = np.array([[1, 2**63 + 5, 7, 2**64 - 1, 0], [9, 8, 2**63, 2**63 - 1, 3]], np.uint64)
    out = mcc.compile(model, verify=False).run({"x": x})
    order = np.argsort(-x.astype(np.float64), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(out["i"], [[3, 1, 2], [2, 3, 0]])
    np.testing.assert_array_equal(out["i"], order)
    np.testing.assert_array_equal(out["v"], np.take_along_axis(x, order, axis=1))


def test_top_k_uint8_smallest():
    k = numpy_helper.from_array(np.array([2], np.int64), "k")
    model = _model(helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=0),
                   [helper.make_tensor_value_info("x", TensorProto.UINT8, [4])],
                   [helper.make_tensor_value_info("v", TensorProto.UINT8, [2]),
                    helper.make_tensor_value_info("i", TensorProto.INT64, [2])], 13, [k])
    out = mcc.compile(model).run({"x": np.array([200, 3, 255, 7], np.uint8)})
    np.testing.assert_array_equal(out["v"], [3, 7])
    np.testing.assert_array_equal(out["i"], [1, 3])


def test_rms_normalization_over_every_axis():
    model = _model(helper.make_node("RMSNormalization", ["x", "w"], ["y"], axis=0, epsilon=0.1),
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])], 23)
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((2, 3, 4)).astype(np.float32) for n in ("x", "w")}
    (ref,) = ReferenceEvaluator(model).run(None, feed)
    out = mcc.compile(model, verify=False).run(feed)["y"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
