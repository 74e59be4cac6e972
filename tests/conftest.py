"""Tiny models built inside the tests, and helpers to drive the CLI in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

# benchmarks/ (the networks of models.py, ONNX Runtime's QDQ baseline in int8.py) is
# shared with the tests rather than written twice
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def make_model(nodes, inputs, outputs, inits=(), name="tiny") -> onnx.ModelProto:
    """An ONNX model from nodes; inputs/outputs are (name, dims) float32 tensors."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
                     for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _rng():
    return np.random.default_rng(42)


def conv_model():
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])],
        [("x", [1, 3, 16, 16])], [("y", [1, 8, 8, 8])],
        [("w", rng.standard_normal((8, 3, 3, 3))), ("b", rng.standard_normal(8))], "conv")


def conv_bn_model(with_bias=True):
    """Conv -> BatchNormalization -> Relu, the pattern mcc.FoldBatchNorm folds."""
    rng = _rng()
    conv_inputs = ["x", "w", "b"] if with_bias else ["x", "w"]
    inits = [("w", rng.standard_normal((8, 3, 3, 3))), ("b", rng.standard_normal(8)),
             ("gamma", rng.uniform(0.5, 2, 8)), ("beta", rng.standard_normal(8)),
             ("mean", rng.standard_normal(8)), ("var", rng.uniform(0.5, 2, 8))]
    return make_model(
        [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                          epsilon=1e-3),
         helper.make_node("Relu", ["n"], ["y"])],
        [("x", [1, 3, 12, 12])], [("y", [1, 8, 12, 12])], inits, "conv_bn")


def residual_model():
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Add", ["r", "x"], ["y"])],
        [("x", [1, 4, 10, 10])], [("y", [1, 4, 10, 10])],
        [("w", rng.standard_normal((4, 4, 3, 3)) * 0.3)], "residual")


def matmul_softmax_model(batch="batch"):
    """MatMul + bias + Softmax with a symbolic batch dimension by default."""
    rng = _rng()
    return make_model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Add", ["m", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)],
        [("x", [batch, 16])], [("probs", [batch, 5])],
        [("w", rng.standard_normal((16, 5))), ("b", rng.standard_normal(5))], "mlp")


def two_output_model():
    return make_model(
        [helper.make_node("Relu", ["x"], ["pos"]), helper.make_node("Neg", ["x"], ["neg"])],
        [("x", [2, 3])], [("pos", [2, 3]), ("neg", [2, 3])], name="two_outputs")


def graph_model(nodes, inputs, outputs, inits=()):
    """A model of any tensor types: inputs / outputs are (name, TensorProto type, dims)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, d) for n, t, d in inputs],
        [helper.make_tensor_value_info(n, t, d) for n, t, d in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def tiny_bert(positions: bool = False):
    """input_ids -> Gather [30, 8], token_type_ids -> Gather [2, 8], attention_mask ->
    Unsqueeze -> Cast -> Mul: the embedding block of every BERT export.

    ``positions`` adds position ids the way torch's BERT export computes them,
    ``Range(0, Gather(Shape(input_ids), 1), 1)`` -> Unsqueeze -> Gather [16, 8], added
    to the embeddings: with symbolic ``seq`` its length must come out as ``seq``."""
    rng = np.random.default_rng(0)
    ids = [(n, TensorProto.INT64, ["batch", "seq"])
           for n in ("input_ids", "attention_mask", "token_type_ids")]
    embed = "e"
    nodes = [helper.make_node("Gather", ["word", "input_ids"], ["we"], name="word_gather"),
             helper.make_node("Gather", ["ttype", "token_type_ids"], ["te"], name="type_gather"),
             helper.make_node("Add", ["we", "te"], ["e"])]
    inits = [("word", rng.standard_normal((30, 8)).astype(np.float32)),
             ("ttype", rng.standard_normal((2, 8)).astype(np.float32)),
             ("ax", np.array([2], np.int64))]
    if positions:
        embed = "ep"
        nodes += [helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
                  helper.make_node("Gather", ["ids_shape", "one"], ["seq_len"], axis=0),
                  helper.make_node("Range", ["zero", "seq_len", "one"], ["pos"]),
                  helper.make_node("Unsqueeze", ["pos", "ax0"], ["pos_ids"]),
                  helper.make_node("Gather", ["ptable", "pos_ids"], ["pe"], name="pos_gather"),
                  helper.make_node("Add", ["e", "pe"], ["ep"])]
        inits += [("ptable", rng.standard_normal((16, 8)).astype(np.float32)),
                  ("zero", np.array(0, np.int64)), ("one", np.array(1, np.int64)),
                  ("ax0", np.array([0], np.int64))]
    return graph_model(
        nodes + [helper.make_node("Unsqueeze", ["attention_mask", "ax"], ["m1"]),
                 helper.make_node("Cast", ["m1"], ["mf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", [embed, "mf"], ["y"])],
        ids, [("y", TensorProto.FLOAT, ["batch", "seq", 8])], inits)


TINY_MODELS = {
    "conv": conv_model,
    "conv_bn": conv_bn_model,
    "residual": residual_model,
    "matmul_softmax": matmul_softmax_model,
    "two_outputs": two_output_model,
}


def tune_conv(root: Path, search, trials: int):
    """``mcc tune`` of :func:`conv_model` saved under ``root``: (model path, log dir,
    TuneReport, progress lines)."""
    import mcc

    model = root / "conv.onnx"
    onnx.save(conv_model(), str(model))
    said = []
    report = mcc.tune(model, trials=trials, tuning_log=root / "log", search=search,
                      progress=said.append)
    return model, root / "log", report, said


@pytest.fixture
def save_onnx(tmp_path):
    """save_onnx(model, name) -> path of the model written under tmp_path."""

    def save(model, name="model.onnx"):
        path = tmp_path / name
        onnx.save(model, str(path))
        return path

    return save


@pytest.fixture
def cli():
    """cli(*args) -> click Result of running `mcc args...` in-process."""
    from mcc.cli import main

    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return run


def assert_one_line_error(result, *fragments):
    """A user error: non-zero exit, one 'error:' line on stderr naming the fragments."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr  # nothing after it (no traceback)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]
