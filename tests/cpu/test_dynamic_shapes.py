"""Symbolic batch and sequence length: compile once, run several sizes from the same .so."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import mcc
from mcc.frontends.onnx_import import ort_reference

HIDDEN, HEADS = 16, 2


def transformer_block() -> onnx.ModelProto:
    """Multi-head self-attention + LayerNorm + MLP over x[batch, seq, 16]; heads are split
    with Reshape(shape=[0, 0, heads, -1]) as exporters write it."""
    rng = np.random.default_rng(7)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    head = HIDDEN // HEADS
    inits = {"wq": w(HIDDEN, HIDDEN), "wk": w(HIDDEN, HIDDEN), "wv": w(HIDDEN, HIDDEN),
             "wo": w(HIDDEN, HIDDEN), "w1": w(HIDDEN, 32), "b1": w(32), "w2": w(32, HIDDEN),
             "gamma": 1 + w(HIDDEN), "beta": w(HIDDEN),
             "split": np.array([0, 0, HEADS, head], np.int64),
             "merge": np.array([0, 0, HIDDEN], np.int64),
             "scale": np.array(1 / np.sqrt(head), np.float32)}
    n = helper.make_node
    nodes = [n("MatMul", ["x", "wq"], ["q0"]), n("MatMul", ["x", "wk"], ["k0"]),
             n("MatMul", ["x", "wv"], ["v0"])]
    for name in "qkv":
        nodes += [n("Reshape", [f"{name}0", "split"], [f"{name}1"]),
                  n("Transpose", [f"{name}1"], [f"{name}h"], perm=[0, 2, 1, 3])]
    nodes += [
        n("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]),
        n("MatMul", ["qh", "kt"], ["s0"]), n("Mul", ["s0", "scale"], ["s"]),
        n("Softmax", ["s"], ["p"], axis=-1), n("MatMul", ["p", "vh"], ["a0"]),
        n("Transpose", ["a0"], ["a1"], perm=[0, 2, 1, 3]), n("Reshape", ["a1", "merge"], ["a"]),
        n("MatMul", ["a", "wo"], ["o"]), n("Add", ["x", "o"], ["r"]),
        n("LayerNormalization", ["r", "gamma", "beta"], ["ln"], axis=-1),
        n("MatMul", ["ln", "w1"], ["h0"]), n("Add", ["h0", "b1"], ["h1"]),
        n("Relu", ["h1"], ["h2"]), n("MatMul", ["h2", "w2"], ["h3"]),
        n("Add", ["ln", "h3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", HIDDEN])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_transformer_block_runs_many_batch_and_sequence_sizes(tmp_path):
    model = transformer_block()
    compiled = mcc.compile(model)
    assert compiled.inputs[0].shape == ("batch", "seq", HIDDEN)
    path = compiled.export(tmp_path / "block.so")
    module = mcc.load(path)
    assert module.inputs[0].shape == ("batch", "seq", HIDDEN)
    reference = ort_reference(model.SerializeToString(), ["y"])
    rng = np.random.default_rng(0)
    for batch, seq in [(1, 5), (2, 7), (3, 1), (1, 32)]:
        x = rng.standard_normal((batch, seq, HIDDEN)).astype(np.float32)
        ours = module.run({"x": x})["y"]
        assert ours.shape == (batch, seq, HIDDEN)
        np.testing.assert_allclose(ours, reference({"x": x})["y"], rtol=1e-4, atol=1e-4)
