"""ONNX import of real-model patterns: If branches invalid at the compiled shapes (Silero
VAD's sample-rate If around nested Ifs feeding an LSTM), declared output shapes that are
wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import mcc

H, IN = 4, 3


def _value(name, dims=None, dtype=TP.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def _branch(nodes, name, outputs, inits=()):
    return helper.make_graph(nodes, name, [], [_value(o) for o in outputs],
                             initializer=list(inits))


def _rank_if(out, x, name, then_unsqueeze):
    """``out = Unsqueeze(x, 0) if rank(x) == 3 else x`` (or the reverse), as torch exports
    ``if x.dim() == 3``: the condition is computed from x's shape."""
    unsq = helper.make_node("Unsqueeze", [x, "ax0"], [f"{name}_u"])
    same = helper.make_node("Identity", [x], [f"{name}_i"])
    first, second = (unsq, same) if then_unsqueeze else (same, unsq)
    return [helper.make_node("Shape", [x], [f"{name}_shape"]),
            helper.make_node("Size", [f"{name}_shape"], [f"{name}_rank"]),
            helper.make_node("Equal", [f"{name}_rank", "three"], [f"{name}_is3"]),
            helper.make_node("If", [f"{name}_is3"], [out], name=name,
                             then_branch=_branch([first], f"{name}_then", first.output),
                             else_branch=_branch([second], f"{name}_else", second.output))]


def vad_like_model():
    """If(sr == 16000) around the net. Each branch: a nested If (on x's rank) feeding an
    LSTM whose W/R/B are outer initializers and whose states are graph inputs. At the
    compiled shapes the else branch's LSTM input is 4-D (ONNX Runtime fails if it runs)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((1, 4 * H, IN)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.standard_normal((1, 8 * H)).astype(np.float32), "B"),
             numpy_helper.from_array(np.array(16000, np.int64), "k16"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(3, np.int64), "three")]

    def path(tag, then_unsqueeze):
        nodes = _rank_if(f"x3_{tag}", "x", f"rank_if_{tag}", then_unsqueeze)
        nodes += [helper.make_node("LSTM", [f"x3_{tag}", "W", "R", "B", "", "h0", "c0"],
                                   [f"y_{tag}", f"hn_{tag}", f"cn_{tag}"], hidden_size=H),
                  helper.make_node("Squeeze", [f"y_{tag}", "ax1"], [f"ys_{tag}"])]
        return _branch(nodes, tag, [f"ys_{tag}", f"hn_{tag}"])

    graph = helper.make_graph(
        [helper.make_node("Equal", ["sr", "k16"], ["is16k"]),
         helper.make_node("If", ["is16k"], ["out", "state"], name="sample_rate_if",
                          then_branch=path("good", False), else_branch=path("bad", True))],
        "vad_like",
        [_value("x", ["T", "N", IN]), _value("h0", [1, "N", H]), _value("c0", [1, "N", H]),
         _value("sr", [], TP.INT64)],
        [_value("out", ["T", "N", H]), _value("state", [1, "N", H])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vad_feed(sr):
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((5, 2, IN)).astype(np.float32),
            "h0": rng.standard_normal((1, 2, H)).astype(np.float32),
            "c0": rng.standard_normal((1, 2, H)).astype(np.float32),
            "sr": np.array(sr, np.int64)}


def test_if_around_nested_if_and_lstm_matches_onnxruntime():
    compiled = mcc.compile(vad_like_model(), verify=False,
                           input_shapes={"x": (5, 2, IN), "h0": (1, 2, H), "c0": (1, 2, H)})
    feed = _vad_feed(16000)
    ours, ref = compiled.run(feed), compiled.reference(feed)
    assert set(ref) == {"out", "state"}
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-5, atol=1e-5)


def test_if_branch_invalid_at_compiled_shapes_fails_at_run_time_like_onnxruntime():
    compiled = mcc.compile(vad_like_model(), verify=False,
                           input_shapes={"x": (5, 2, IN), "h0": (1, 2, H), "c0": (1, 2, H)})
    feed = _vad_feed(8000)
    with pytest.raises(Exception, match="3 dimensions"):  # ONNX Runtime fails too
        compiled.reference(feed)
    with pytest.raises(Exception, match="sample_rate_if.*else_branch.*LSTM input X must be 3-D"):
        compiled.run(feed)


def test_if_branch_errors_still_fail_the_import_when_both_branches_fail():
    model = vad_like_model()
    for branch in model.graph.node[1].attribute:
        branch.g.node[-2].input[1] = "B"  # a 2-D W: neither branch converts
    with pytest.raises(mcc.MccError, match="cannot import"):
        mcc.compile(model, verify=False,
                    input_shapes={"x": (5, 2, IN), "h0": (1, 2, H), "c0": (1, 2, H)})


def wrong_declared_shapes_model():
    """(N, C, T) features -> (T, N, C), a CRNN head whose exporter declared the output
    flattened, (1, T*C). Trusted, that folds Shape(out) to (1, T*C) (an intermediate's
    wrong value_info is dropped the same way, but ONNX Runtime trusts those itself)."""
    ints = {"ax0": np.array([0], np.int64), "ax1": np.array([1], np.int64),
            "i0": np.array(0, np.int64), "minus1": np.array([-1], np.int64)}
    inits = [numpy_helper.from_array(v, k) for k, v in ints.items()]
    nodes = [helper.make_node("Shape", ["x"], ["x_shape"]),
             helper.make_node("Gather", ["x_shape", "i0"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["feat"]),  # (N, C*T)
             helper.make_node("Transpose", ["feat"], ["t"], perm=[1, 0]),
             helper.make_node("Unsqueeze", ["t", "ax1"], ["out"]),  # (C*T, 1, N)
             helper.make_node("Shape", ["out"], ["out_shape"]),
             helper.make_node("Reshape", ["x", "out_shape"], ["again"])]
    graph = helper.make_graph(
        nodes, "crnn_head", [_value("x", ["N", 4, 8])],
        [_value("out", [1, 96]), _value("again", [1, 96])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_computed_output_shapes_win_over_declared_ones():
    compiled = mcc.compile(wrong_declared_shapes_model(), input_shapes={"x": (3, 4, 8)})
    assert compiled.report["verify"]["ok"]  # against ONNX Runtime
    feed = {"x": np.random.default_rng(3).standard_normal((3, 4, 8)).astype(np.float32)}
    ours, ref = compiled.run(feed), compiled.reference(feed)
    assert ref["out"].shape == (32, 1, 3) and ref["again"].shape == (32, 1, 3)
    for name in ref:
        assert ours[name].shape == ref[name].shape
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op_type, kernel", [("Sum", "add"), ("Max", "maximum"),
                                             ("Min", "minimum")])
def test_variadic_ops_are_binary_op_chains(op_type, kernel):
    """Sum/Max/Min of three broadcasting inputs: one fused kernel of binary ops (not
    broadcast + stack + reduce), matching ONNX Runtime."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(op_type, ["a", "b", "c"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 1]),
         helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    compiled = mcc.compile(model)
    assert compiled.report["verify"]["ok"]
    kernels = list(compiled.report["schedule"]["kernels"])
    assert len(kernels) == 1 and kernel in kernels[0] and "stack" not in kernels[0]
