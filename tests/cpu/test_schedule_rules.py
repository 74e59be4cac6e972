"""mcc's default CPU schedule rules: which kernels they take, and numerics against ONNX Runtime.

Each model is a tiny ONNX graph around one kernel pattern. The numeric tests
compile it with mcc (default rules, no tuning) and compare with ONNX Runtime on
fresh inputs; the structural tests check that the intended rule scheduled the
kernel (parallel, vectorised, accumulating in a local tile) and that the
aarch64 build uses NEON-width vectors.
"""

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import helper

import mcc
from conftest import make_model
from mcc.build.pipeline import optimize
from mcc.frontends import import_model
from mcc.schedule.rules import Injective, RowReduction, TiledReduction, cpu_info, rules_for

X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2}
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


def _rng():
    return np.random.default_rng(7)


def conv_relu(cin=16, cout=32, k=3, stride=1, hw=9, group=1):
    rng = _rng()
    pad = k // 2
    out = (hw + 2 * pad - k) // stride + 1
    return make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2,
                          group=group),
         helper.make_node("Relu", ["c"], ["y"])],
        [("x", [1, cin, hw, hw])], [("y", [1, cout, out, out])],
        [("w", rng.standard_normal((cout, cin // group, k, k)) * 0.2),
         ("b", rng.standard_normal(cout))], "conv_relu")


def depthwise_clip(c=32, hw=10):
    """Depthwise 3x3 + ReLU6 (ONNX Clip), the MobileNetV2 pattern."""
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4, group=c),
         helper.make_node("Clip", ["c", "lo", "hi"], ["y"])],
        [("x", [1, c, hw, hw])], [("y", [1, c, hw, hw])],
        [("w", rng.standard_normal((c, 1, 3, 3))), ("lo", np.float32(0)),
         ("hi", np.float32(6))], "depthwise")


def conv1x1_residual(c=32, hw=7):
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("Add", ["c", "x"], ["s"]),
         helper.make_node("Relu", ["s"], ["y"])],
        [("x", [1, c, hw, hw])], [("y", [1, c, hw, hw])],
        [("w", rng.standard_normal((c, c, 1, 1)) * 0.2)], "conv1x1_residual")


def dense(rows=8, k=40, n=48, gelu=False):
    """[1, rows, k] @ [k, n] + bias (BERT's linear layers), optionally with erf-GELU."""
    rng = _rng()
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a" if gelu else "y"])]
    inits = [("w", rng.standard_normal((k, n)) * 0.2), ("b", rng.standard_normal(n))]
    if gelu:
        nodes += [helper.make_node("Div", ["a", "sqrt2"], ["d"]),
                  helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["e1"]),
                  helper.make_node("Mul", ["a", "e1"], ["g"]),
                  helper.make_node("Mul", ["g", "half"], ["y"])]
        inits += [("sqrt2", np.float32(np.sqrt(2))), ("one", np.float32(1)),
                  ("half", np.float32(0.5))]
    return make_model(nodes, [("x", [1, rows, k])], [("y", [1, rows, n])], inits, "dense")


def batch_matmul_softmax(heads=2, seq=16, dim=16):
    """Attention scores: softmax(Q @ K^T) @ V with all three as inputs."""
    return make_model(
        [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
         helper.make_node("MatMul", ["q", "kt"], ["s"]),
         helper.make_node("Softmax", ["s"], ["p"], axis=-1),
         helper.make_node("MatMul", ["p", "v"], ["y"])],
        [("q", [1, heads, seq, dim]), ("k", [1, heads, seq, dim]), ("v", [1, heads, seq, dim])],
        [("y", [1, heads, seq, dim])], name="attention")


def pools(c=16, hw=12):
    """ResNet's stem and head: conv -> max pool 3x3/2 ... global average pool."""
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
         helper.make_node("MaxPool", ["c"], ["m"], kernel_shape=[3, 3], strides=[2, 2],
                          pads=[1] * 4),
         helper.make_node("GlobalAveragePool", ["m"], ["y"])],
        [("x", [1, 3, hw, hw])], [("y", [1, c, 1, 1])],
        [("w", rng.standard_normal((c, 3, 3, 3)))], name="pools")


def conv_x_times_f(act="silu", c=16, cout=32, hw=9):
    """1x1 conv + an activation that multiplies its input by a function of it: SiLU
    (x * Sigmoid(x)) or HardSwish; the conv's output is read twice."""
    rng = _rng()
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"])]
    if act == "silu":
        nodes += [helper.make_node("Sigmoid", ["c"], ["s"]),
                  helper.make_node("Mul", ["c", "s"], ["y"])]
    else:
        nodes += [helper.make_node("HardSwish", ["c"], ["y"])]
    return make_model(nodes, [("x", [1, c, hw, hw])], [("y", [1, cout, hw, hw])],
                      [("w", rng.standard_normal((cout, c, 1, 1)) * 0.5),
                       ("b", rng.standard_normal(cout))], f"conv_{act}")


def gemv(k=64, n=40):
    rng = _rng()
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [("x", [1, k])], [("y", [1, n])],
                      [("w", rng.standard_normal((k, n)) * 0.2)], "gemv")


MODELS = {"conv3x3": conv_relu, "conv3x3_s2": lambda: conv_relu(stride=2, hw=10),
          "conv_odd_channels": lambda: conv_relu(cin=3, cout=24, k=7, stride=2, hw=15),
          "depthwise": depthwise_clip, "conv1x1_residual": conv1x1_residual,
          "dense": dense, "dense_gelu": lambda: dense(gelu=True), "gemv": gemv,
          "attention": batch_matmul_softmax, "pools": pools,
          "conv_24ch_s2": lambda: conv_relu(cin=24, cout=48, stride=2, hw=12),
          "conv_silu": conv_x_times_f, "conv_hardswish": lambda: conv_x_times_f("hardswish")}


def _ort(model, feed):
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, feed)


def _inputs(model, seed):
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
            .astype(np.float32) for i in model.graph.input}


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_rules_match_onnxruntime(name, layout):
    model = MODELS[name]()
    if layout == "NCHW" and not any(n.op_type == "Conv" for n in model.graph.node):
        pytest.skip("no convolution: the layout does not change the kernels")
    compiled = mcc.compile(model, target=X86, layout=layout)  # verifies vs ORT (1e-4) itself
    assert compiled.report["schedule"]["naive"] == 0
    feed = _inputs(model, seed=1)
    (expected,) = _ort(model, feed)
    (actual,) = compiled.run(feed).values()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def _kernels(model, target, layout="NHWC"):
    """The model's fused PrimFuncs after mcc's graph pipeline, by name."""
    target = tvm.target.Target(target)
    mod, _ = optimize(import_model(model, {}, None).mod, target, layout=layout)
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def _scheduled_text(rule, func, target):
    sch = rule.apply(func, tvm.target.Target(target), False)
    return None if sch is None else sch.mod["main"].script()


@pytest.mark.parametrize("name,kernel,lanes", [
    ("conv3x3", "conv2d", 16), ("depthwise", "conv2d", 16), ("dense", "matmul", 16),
    ("attention", "matmul", 16), ("pools", "pool", 16), ("gemv", "matmul", 8),
    ("conv_odd_channels", "conv2d", 8)])
def test_tiled_reduction_takes_the_heavy_kernels(name, kernel, lanes):
    funcs = _kernels(MODELS[name](), X86)
    hits = [n for n in funcs if kernel in n]
    assert hits, sorted(funcs)
    for fname in hits:
        text = _scheduled_text(TiledReduction(), funcs[fname], X86)
        assert text is not None, f"{fname} not taken"
        assert f"T.vectorized(T.int64({lanes}))" in text  # 40 / 24 channels: 8-wide vectors
        assert 'scope="local"' in text  # accumulates a register tile
        if name != "gemv":  # a 40-wide GEMV is one tile
            assert "T.parallel" in text


def test_epilogue_is_fused_into_the_conv_tile():
    funcs = _kernels(conv_relu(), X86)
    (fname,) = [n for n in funcs if "conv2d" in n]
    text = _scheduled_text(TiledReduction(), funcs[fname], X86)
    # bias add and relu are written from the accumulator tile: no block writes the
    # conv's own full-size intermediate any more, and one parallel loop nest remains
    assert text.count("T.parallel") == 2  # padding + the conv tile loop
    assert "T.max(" in text and "T_add_intermediate =" not in text


@pytest.mark.parametrize("act", ["silu", "hardswish"])
def test_x_times_f_of_x_is_fused_into_the_conv_tile(act):
    """SiLU / HardSwish read the conv's output twice: the steps of f(x) are inlined into the
    multiply, which the write-back then takes whole (they were separate passes over
    full-size buffers)."""
    funcs = _kernels(conv_x_times_f(act), X86)
    (fname,) = [n for n in funcs if "conv2d" in n]
    text = _scheduled_text(TiledReduction(), funcs[fname], X86)
    assert text.count("T.parallel") == 1  # the conv tile loop only
    # no full-size buffer between the accumulator tile and the output
    assert text.count("T.sblock_alloc_buffer") == 1 and 'scope="local"' in text


def test_padding_of_24_channels_is_vectorised():
    """The zero padding before a stride-2 conv of 24 channels: 8-lane vectors along the
    channels (16 do not divide 24), not a scalar loop over the fused index."""
    funcs = _kernels(conv_relu(cin=24, cout=48, stride=2, hw=12), X86)
    (fname,) = [n for n in funcs if "conv2d" in n]
    text = _scheduled_text(TiledReduction(), funcs[fname], X86)
    loops_of_the_padding = text[:text.index('T.sblock("pad_temp")')]
    assert "T.vectorized(T.int64(8))" in loops_of_the_padding


def test_row_reductions_are_left_to_the_row_rule():
    funcs = _kernels(batch_matmul_softmax(), X86)
    (softmax,) = [f for n, f in funcs.items() if "softmax" in n and "matmul" not in n]
    assert TiledReduction().apply(softmax, tvm.target.Target(X86), False) is None
    assert Injective().apply(softmax, tvm.target.Target(X86), False) is None
    assert RowReduction().apply(softmax, tvm.target.Target(X86), False) is not None


def test_vector_width_follows_the_target():
    assert cpu_info(tvm.target.Target(X86)).lanes("float32") == 16
    haswell = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}
    assert cpu_info(tvm.target.Target(haswell)).lanes("float32") == 8
    assert cpu_info(tvm.target.Target(AARCH64)).lanes("float32") == 4
    assert [type(r).__name__ for r in rules_for(tvm.target.Target(AARCH64))][0] == "TiledReduction"


@pytest.mark.parametrize("name", ["conv3x3", "dense", "depthwise"])
def test_aarch64_neon_build(name):
    """The rules produce NEON code for aarch64 (codegen only; running is the ARM tests' job)."""
    from mcc.build.lower import build
    from mcc.schedule import schedule

    target = tvm.target.Target(AARCH64)
    mod, _ = optimize(import_model(MODELS[name](), {}, None).mod, target, layout="auto")
    for fname, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and ("conv2d" in fname.name_hint
                                                    or "matmul" in fname.name_hint):
            text = _scheduled_text(TiledReduction(), func, AARCH64)
            assert text is not None and "T.vectorized(T.int64(4))" in text
    mod, report = schedule(mod, target, "llvm-aarch64")
    assert report.naive == 0
    asm = _asm(build(mod, target))
    assert "fmla\tv" in asm and ".4s" in asm  # NEON fused multiply-add on 4 x f32
    assert "zmm" not in asm and "ymm" not in asm


def _asm(executable) -> str:
    module = executable.mod if hasattr(executable, "mod") else executable
    for sub in [module, *getattr(module, "imports", [])]:
        if hasattr(sub, "inspect_source"):
            text = sub.inspect_source("asm")
            if text:
                return text
    raise AssertionError("no assembly found in the built module")


def test_depthwise_pads_each_tile_in_place():
    """Depthwise reads its input once: no separately padded copy, one parallel loop nest."""
    funcs = _kernels(depthwise_clip(), X86)
    (fname,) = [n for n in funcs if "conv2d" in n]
    text = _scheduled_text(TiledReduction(), funcs[fname], X86)
    assert text.count("T.parallel") == 1
    flat = _scheduled_text(TiledReduction(pad_in_tile=False), funcs[fname], X86)
    assert flat.count("T.parallel") == 2


def test_gru_gates_shared_by_two_slices_build_fused(save_onnx):
    """A GRU step's gate matmul feeds two slices (z and r): the epilogue must not inline one
    of them into the write-back (that removed the buffer the other reads and the build fell
    back to unfused epilogues), and the outputs match ONNX Runtime."""
    from onnx import helper

    from conftest import make_model

    rng = np.random.default_rng(0)
    hidden, size, steps = 128, 40, 2
    model = make_model(
        [helper.make_node("GRU", ["x", "w", "r", "b"], ["y"], hidden_size=hidden,
                          linear_before_reset=1)],
        [("x", [steps, 1, size])], [("y", [steps, 1, 1, hidden])],
        [("w", rng.standard_normal((1, 3 * hidden, size)) * 0.3),
         ("r", rng.standard_normal((1, 3 * hidden, hidden)) * 0.3),
         ("b", rng.standard_normal((1, 6 * hidden)) * 0.1)], "gru")
    lines = []
    compiled = mcc.compile(save_onnx(model), progress=lines.append)
    assert compiled.report["verify"]["ok"]
    assert not any("unfused epilogues" in line for line in lines), lines
