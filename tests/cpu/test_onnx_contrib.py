"""Microsoft contrib ops (domain com.microsoft): each compiles and matches ONNX Runtime,
which implements them; one without a converter is a one-line error naming it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import mcc
from conftest import assert_one_line_error

MS = "com.microsoft"


def contrib_model(nodes, inputs, outputs, inits=()):
    """Outputs are declared with the first input's rank (true for every case here)."""
    rng = np.random.default_rng(7)
    rank = len(inputs[0][1])
    graph = helper.make_graph(
        nodes, "contrib",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}{i}" for i in range(rank)])
         for n in outputs],
        initializer=[numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), n)
                     for n, shape in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    return model


def node(op_type, inputs, outputs, **attrs):
    return helper.make_node(op_type, inputs, outputs, domain=MS, name=f"my_{op_type}", **attrs)


CASES = {
    "FusedMatMul_transB_alpha": ([node("FusedMatMul", ["a", "b"], ["y"], transB=1, alpha=0.5)],
                                 [("a", [2, 3, 4])], ["y"], [("b", (2, 5, 4))]),
    "FusedMatMul_transA": ([node("FusedMatMul", ["a", "b"], ["y"], transA=1)],
                           [("a", [4, 3])], ["y"], [("b", (4, 6))]),
    "Gelu": ([node("Gelu", ["x"], ["y"])], [("x", [2, 8])], ["y"], []),
    "FastGelu": ([node("FastGelu", ["x"], ["y"])], [("x", [2, 8])], ["y"], []),
    "FastGelu_bias": ([node("FastGelu", ["x", "bias"], ["y"])], [("x", [2, 3, 8])], ["y"],
                      [("bias", (8,))]),
    "BiasGelu": ([node("BiasGelu", ["x", "bias"], ["y"])], [("x", [2, 3, 8])], ["y"],
                 [("bias", (8,))]),
    "QuickGelu": ([node("QuickGelu", ["x"], ["y"], alpha=1.5)], [("x", [2, 8])], ["y"], []),
    "SkipLayerNormalization": (
        [node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"],
              ["y", "", "", "sum"], epsilon=1e-5)],
        [("x", [2, 3, 16]), ("skip", [2, 3, 16])], ["y", "sum"],
        [("gamma", (16,)), ("beta", (16,)), ("bias", (16,))]),
    "SkipLayerNormalization_no_bias": (
        [node("SkipLayerNormalization", ["x", "skip", "gamma"], ["y"])],
        [("x", [2, 3, 16]), ("skip", [2, 3, 16])], ["y"], [("gamma", (16,))]),
    "SkipSimplifiedLayerNormalization": (
        [node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma"], ["y"],
              epsilon=1e-6)],
        [("x", [2, 3, 16]), ("skip", [2, 3, 16])], ["y"], [("gamma", (16,))]),
    "Attention": ([node("Attention", ["x", "w", "b"], ["y"], num_heads=2)],
                  [("x", [1, 4, 8])], ["y"], [("w", (8, 24)), ("b", (24,))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_contrib_op_matches_onnxruntime(case):
    compiled = mcc.compile(contrib_model(*CASES[case]))  # verified against ONNX Runtime
    verify = compiled.report["verify"]
    assert verify["ok"], verify
    assert set(verify["outputs"]) == set(CASES[case][2])


def test_contrib_ops_do_not_shadow_onnx_ops_of_the_same_name():
    """ONNX's own LayerNormalization (axis=1) next to the contrib Gelu."""
    model = contrib_model(
        [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=1),
         node("Gelu", ["n"], ["y"])],
        [("x", [2, 3, 4])], ["y"], [("gamma", (3, 4)), ("beta", (3, 4))])
    assert mcc.compile(model).report["verify"]["ok"]


def test_unsupported_contrib_op_names_op_node_and_domain(save_onnx, cli):
    model = contrib_model([node("Inverse", ["x"], ["y"])], [("x", [2, 3, 3])], ["y"])
    path = save_onnx(model)
    result = cli("compile", path, "-o", path.with_suffix(".so"))
    assert_one_line_error(result, "Inverse", "com.microsoft", "my_Inverse")
    with pytest.raises(mcc.MccError, match="unsupported ONNX op 'Inverse' "
                                           r"\(domain com.microsoft"):
        mcc.compile(model)
    assert onnx.checker  # the model itself is valid ONNX


def test_embed_layer_normalization_matches_onnxruntime():
    """Word + position + segment embeddings, then LayerNorm (BERT exports); the ids must
    index the tables, so the feed is chosen here."""
    rng = np.random.default_rng(0)
    tables = [("we", (50, 16)), ("pe", (8, 16)), ("se", (2, 16)), ("g", (16,)), ("b", (16,))]
    graph = helper.make_graph(
        [node("EmbedLayerNormalization", ["ids", "seg", "we", "pe", "se", "g", "b"],
              ["y", "mask_index"], epsilon=1e-5)], "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT32, [2, 8]),
         helper.make_tensor_value_info("seg", TensorProto.INT32, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16]),
         helper.make_tensor_value_info("mask_index", TensorProto.INT32, [2])],
        initializer=[numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
                     for n, s in tables])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    compiled = mcc.compile(model, verify=False)
    feed = {"ids": rng.integers(0, 50, (2, 8)).astype(np.int32),
            "seg": rng.integers(0, 2, (2, 8)).astype(np.int32)}
    ours, ref = compiled.run(feed), compiled.reference(feed)
    np.testing.assert_allclose(ours["y"], ref["y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours["mask_index"], ref["mask_index"])


def test_contrib_op_inside_an_if_branch():
    then = helper.make_graph([node("FastGelu", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 8])])
    other = helper.make_graph([node("Gelu", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 8])])
    model = contrib_model(
        [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["positive"]),
         helper.make_node("If", ["positive"], ["y"], then_branch=then, else_branch=other)],
        [("x", [2, 8])], ["y"], [])
    model.graph.initializer.append(numpy_helper.from_array(np.array(0, np.float32), "zero"))
    compiled = mcc.compile(model)
    assert compiled.report["verify"]["ok"]
    for sign in (1, -1):
        feed = {"x": sign * np.abs(np.random.default_rng(1).standard_normal((2, 8)))
                .astype(np.float32)}
        np.testing.assert_allclose(compiled.run(feed)["y"], compiled.reference(feed)["y"],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_quantize_lstm_matches_onnxruntime(per_channel, tmp_path):
    """A bidirectional LSTM through onnxruntime's quantize_dynamic: int8 weights, uint8
    activations quantized per GEMM; mcc multiplies them in integers as ONNX Runtime does
    (mcc's u8 x s8 kernel; outputs verified against ONNX Runtime)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    hidden, size, steps = 16, 8, 5
    inits = {"w": rng.standard_normal((2, 4 * hidden, size)) * 0.3,
             "r": rng.standard_normal((2, 4 * hidden, hidden)) * 0.3,
             "b": rng.standard_normal((2, 8 * hidden)) * 0.1}
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "w", "r", "b"], ["y", "yh", "yc"],
                          hidden_size=hidden, direction="bidirectional")], "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [steps, 1, size])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "yh", "yc")],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "lstm.onnx")
    quantize_dynamic(tmp_path / "lstm.onnx", tmp_path / "q.onnx", weight_type=QuantType.QInt8,
                     op_types_to_quantize=["LSTM"], per_channel=per_channel)
    assert "DynamicQuantizeLSTM" in [n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node]
    compiled = mcc.compile(str(tmp_path / "q.onnx"))
    assert compiled.report["verify"]["ok"]
    kernels = compiled.report["schedule"]["kernels"]
    # the input projection and the recurrent product (one kernel each for both directions)
    assert len([name for name, info in kernels.items() if "mcc_qmatmul" in name
                and info["schedule"] == "int8 kernel"]) == 2, kernels
