"""mcc.passes.layout: NHWC conversion without stray transposes, and the same numerics."""

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import helper
from tvm import relax

import mcc
from conftest import make_model
from mcc.build.pipeline import resolve_layout
from mcc.errors import MccError
from mcc.frontends import import_model
from mcc.passes import FoldBatchNorm, convert_layout, count_ops


def inverted_residual(blocks=3, c=16):
    """MobileNetV2-style blocks: 1x1 conv, ReLU6 (Clip), depthwise 3x3, ReLU6, 1x1 conv, add."""
    rng = np.random.default_rng(3)
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        e = 2 * c
        nodes += [
            helper.make_node("Conv", [x, f"w{i}a", f"b{i}a"], [f"a{i}"]),
            helper.make_node("Clip", [f"a{i}", "lo", "hi"], [f"ra{i}"]),
            helper.make_node("Conv", [f"ra{i}", f"w{i}d"], [f"d{i}"], group=e, pads=[1] * 4),
            helper.make_node("Clip", [f"d{i}", "lo", "hi"], [f"rd{i}"]),
            helper.make_node("Conv", [f"rd{i}", f"w{i}p"], [f"p{i}"]),
            helper.make_node("Add", [f"p{i}", x], [f"y{i}"]),
        ]
        inits += [(f"w{i}a", rng.standard_normal((e, c, 1, 1)) * 0.3),
                  (f"b{i}a", rng.standard_normal(e)),
                  (f"w{i}d", rng.standard_normal((e, 1, 3, 3)) * 0.3),
                  (f"w{i}p", rng.standard_normal((c, e, 1, 1)) * 0.3)]
        x = f"y{i}"
    nodes.append(helper.make_node("Relu", [x], ["y"]))
    inits += [("lo", np.float32(0)), ("hi", np.float32(6))]
    return make_model(nodes, [("x", [1, c, 8, 8])], [("y", [1, c, 8, 8])], inits, "mbv2_blocks")


def _graph(model):
    mod = import_model(model, {}, None).mod
    return tvm.transform.Sequential([relax.transform.FoldConstant(), FoldBatchNorm()])(mod)


@pytest.mark.parametrize("blocks", [1, 3])
def test_nhwc_leaves_only_the_boundary_transposes(blocks):
    before = count_ops(_graph(inverted_residual(blocks)))
    assert before["relax.call_tir"] == 4 * blocks  # Clip imported as max/min kernels
    after = count_ops(convert_layout(_graph(inverted_residual(blocks)), "NHWC"))
    # one transpose in (NCHW -> NHWC) and one out, however many layers are in between
    assert after["relax.permute_dims"] == 2
    assert after["relax.call_tir"] == 0
    assert after["relax.maximum"] == after["relax.minimum"] == 2 * blocks
    assert after["relax.nn.conv2d"] == 3 * blocks


def test_weights_are_transformed_at_compile_time():
    mod = convert_layout(_graph(inverted_residual(1)), "NHWC")
    convs = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: convs.append(e) if isinstance(e, relax.Call)
        and getattr(e.op, "name", "") == "relax.nn.conv2d" else None)
    assert {c.attrs.data_layout for c in convs} == {"NHWC"}
    assert all(isinstance(c.args[1], tvm.ir.expr.Constant) for c in convs)  # folded HWIO


def test_inverse_transposes_cancel():
    from mcc.passes.layout import _cancel_transposes

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape=(1, 2, 3, 4), dtype="float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            b = bb.emit(relax.op.permute_dims(a, [0, 3, 1, 2]))  # undoes a
            c = bb.emit(relax.op.permute_dims(b, [1, 0, 2, 3]))
            d = bb.emit(relax.op.permute_dims(c, [0, 1, 3, 2]))  # merges with c
            out = bb.emit_output(relax.op.add(d, d))
        bb.emit_func_output(out)
    mod = relax.transform.DeadCodeElimination()(_cancel_transposes(bb.get()))
    assert count_ops(mod)["relax.permute_dims"] == 1
    data = np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)
    vm = relax.VirtualMachine(tvm.compile(relax.transform.LegalizeOps()(mod), target="llvm"),
                              tvm.cpu())
    expected = data.transpose(1, 0, 3, 2) * 2
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(data)).numpy(), expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "auto"])
def test_layouts_give_the_same_outputs(layout):
    model = inverted_residual(2)
    compiled = mcc.compile(model, layout=layout)  # also verified against ORT at 1e-4
    assert any(p.startswith("mcc.ConvertLayout(") for p in compiled.metadata["passes"])
    x = np.random.default_rng(5).standard_normal((1, 16, 8, 8)).astype(np.float32)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-4)


def test_auto_layout_per_target_and_bad_layout():
    assert resolve_layout("auto", "llvm") == "NHWC"
    assert resolve_layout("NCHW", "llvm") == "NCHW"
    with pytest.raises(MccError, match="valid layouts: NCHW, NHWC, NCHWc, auto"):
        resolve_layout("NCHW16c", "llvm")


def test_cli_layout_option(cli, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(inverted_residual(1).SerializeToString())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--layout", "NCHW")
    assert result.exit_code == 0, result.output
    bad = cli("compile", path, "--layout", "NCWH")
    assert bad.exit_code != 0 and "NCWH" in bad.output



def conv_and_elementwise_mean():
    """A conv beside an ONNX Mean of two tensors, which imports as stack + mean: TVM's
    ConvertLayout cannot lay out the reduction over the stacked axis ("can't find S in
    source layout ABC", as Google's Magika's Max did)."""
    rng = np.random.default_rng(2)
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
         helper.make_node("Relu", ["c"], ["y"]),
         helper.make_node("Mean", ["p", "q"], ["z"])],
        [("x", [1, 4, 8, 8]), ("p", [2, 16]), ("q", [2, 16])],
        [("y", [1, 8, 8, 8]), ("z", [2, 16])],
        [("w", rng.standard_normal((8, 4, 3, 3)) * 0.3)], "conv_and_mean")


def test_auto_says_which_op_kept_the_imported_layout(monkeypatch):
    # stack is now rewritten before ConvertLayout (the Mean converts as a whole); without
    # that step it stands for any op whose layout TVM cannot infer
    monkeypatch.setattr("mcc.passes.layout._stack_as_concat", lambda mod: mod)
    model = conv_and_elementwise_mean()
    lines = []
    compiled = mcc.compile(model, layout="auto", progress=lines.append)  # verified vs ORT
    said = [line for line in lines if "layout:" in line]
    assert len(said) == 1, lines
    assert " at relax.mean (" in said[0] and "converted each conv on its own" in said[0]
    conv = [info for name, info in compiled.report["schedule"]["kernels"].items()
            if "conv2d" in name]
    assert conv and all(info["schedule"] == "rule TiledReduction" for info in conv)
    rng = np.random.default_rng(4)
    feed = {"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32),
            "p": rng.standard_normal((2, 16)).astype(np.float32),
            "q": rng.standard_normal((2, 16)).astype(np.float32)}
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    got = compiled.run(feed)
    np.testing.assert_allclose(got["y"], expected[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["z"], expected[1])
    # an explicit NHWC holds for the convs, converted one by one
    assert mcc.compile(model, layout="NHWC").report["verify"]["ok"]


def _conv_under_if():
    """Silero VAD's pattern: the convs sit in the branches of an If on an input (its sample
    rate), which TVM's ConvertLayout (dataflow blocks only) does not reach."""
    from onnx import TensorProto

    rng = np.random.default_rng(5)

    def branch(name, scale):
        w = helper.make_tensor(f"w_{name}", TensorProto.FLOAT, [16, 8, 1, 3],
                               (rng.standard_normal(16 * 8 * 3) * scale).astype(np.float32))
        return helper.make_graph(
            [helper.make_node("Conv", ["x", f"w_{name}"], [f"c_{name}"], pads=[0, 1, 0, 1]),
             helper.make_node("Relu", [f"c_{name}"], [f"y_{name}"])], name, [],
            [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [1, 16, 1, 24])],
            [w])

    graph = helper.make_graph(
        [helper.make_node("Greater", ["rate", "limit"], ["fast"]),
         helper.make_node("If", ["fast"], ["y"], then_branch=branch("then", 0.3),
                          else_branch=branch("else", 0.1))],
        "conv_under_if",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1, 24]),
         helper.make_tensor_value_info("rate", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 1, 24])],
        [helper.make_tensor("limit", TensorProto.INT64, [], [8000])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("rate", [16000, 8000])
def test_convs_inside_if_branches_are_converted_too(rate):
    model = _conv_under_if()
    mod = convert_layout(import_model(model, {"x": [1, 8, 1, 24], "rate": []}).mod, "NHWC")
    convs = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            convs.append(expr.attrs.data_layout)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    assert convs == ["NHWC", "NHWC"]
    x = np.random.default_rng(1).standard_normal((1, 8, 1, 24)).astype(np.float32)
    feed = {"x": x, "rate": np.array(rate, np.int64)}
    compiled = mcc.compile(model, example_inputs=feed)  # verifies against ONNX Runtime
    kernels = compiled.report["schedule"]["kernels"]
    assert all(info["schedule"] == "rule TiledReduction"
               for name, info in kernels.items() if "conv2d" in name)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    np.testing.assert_allclose(compiled.run(feed)["y"], expected, rtol=1e-4, atol=1e-4)


def conv_then_lstm():
    """A CRNN's shape: conv -> [T, 1, C] sequence -> LSTM, whose unrolled outputs are a
    relax.stack (the layout inference TVM lacks for stack kept whole OCR models NCHW)."""
    rng = np.random.default_rng(6)
    c, t, hidden = 8, 6, 5
    def ints(name, values):  # make_model's initializers are float32
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name, 7, [len(values)], values))  # 7: INT64

    return make_model(
        [ints("shape", [c, t]), ints("one", [1]),
         helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Reshape", ["r", "shape"], ["s"]),  # [1, C, 1, T] -> [C, T]
         helper.make_node("Transpose", ["s"], ["st"], perm=[1, 0]),
         helper.make_node("Unsqueeze", ["st", "one"], ["seq"]),  # [T, 1, C]
         helper.make_node("LSTM", ["seq", "wl", "rl"], ["y"], hidden_size=hidden)],
        [("x", [1, 4, 1, t])], [("y", [t, 1, 1, hidden])],
        [("w", rng.standard_normal((c, 4, 3, 3)) * 0.3),
         ("wl", rng.standard_normal((1, 4 * hidden, c)) * 0.3),
         ("rl", rng.standard_normal((1, 4 * hidden, hidden)) * 0.3)], "conv_lstm")


def test_an_unrolled_rnn_after_convs_converts_as_a_whole():
    from mcc.passes.layout import convert_conv_layout

    model = conv_then_lstm()
    mod = import_model(model, {}, None).mod
    assert count_ops(mod).get("relax.stack", 0) >= 1
    converted = convert_conv_layout(mod, {"relax.nn.conv2d": ["NHWC", "HWIO"]})  # no raise
    assert count_ops(converted).get("relax.stack", 0) == 0
    lines = []
    compiled = mcc.compile(model, layout="NHWC", progress=lines.append)  # verified vs ORT
    assert not [line for line in lines if "layout:" in line], lines  # no per-conv fallback
    x = np.random.default_rng(7).standard_normal((1, 4, 1, 6)).astype(np.float32)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)


def hard_activations(c=16):
    """PP-LCNet / MobileNetV3 style: conv, HardSwish, depthwise conv, HardSigmoid gate."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["a"]),
        helper.make_node("HardSwish", ["a"], ["ha"]),
        helper.make_node("Conv", ["ha", "wd"], ["d"], group=c, pads=[1] * 4),
        helper.make_node("HardSigmoid", ["d"], ["g"], alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["ha", "g"], ["y"]),
    ]
    inits = [("wa", rng.standard_normal((c, c, 1, 1)) * 0.5), ("ba", rng.standard_normal(c)),
             ("wd", rng.standard_normal((c, 1, 3, 3)) * 0.5)]
    model = make_model(nodes, [("x", [1, c, 8, 8])], [("y", [1, c, 8, 8])], inits, "hard")
    model.opset_import[0].version = max(model.opset_import[0].version, 14)  # HardSwish
    return model


def test_hardswish_and_hardsigmoid_do_not_pin_nchw():
    """TVM imports them with relax.clip, for which ConvertLayout has no rule: each sat
    between a transpose to NCHW and one back, outside its conv's epilogue."""
    mod = convert_layout(_graph(hard_activations()), "NHWC")
    ops = count_ops(mod)
    assert ops["relax.permute_dims"] == 2  # the boundary ones only
    assert ops.get("relax.clip", 0) == 0


def test_hardswish_model_matches_onnx_runtime():
    model = hard_activations()
    compiled = mcc.compile(model, layout="NHWC")
    x = np.random.default_rng(6).standard_normal((1, 16, 8, 8)).astype(np.float32) * 4
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    got = compiled.run({"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
