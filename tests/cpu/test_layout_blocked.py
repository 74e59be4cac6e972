"""mcc.passes.layout_blocked: NCHW[x]c conversion, one transform in and out, same numerics."""

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
from mcc.passes.layout_blocked import CONV_KERNELS, block_size, to_blocked_layout

AVX512 = {"kind": "llvm", "mcpu": "znver4"}
AVX2 = {"kind": "llvm", "mcpu": "haswell"}
NEON = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}


def residual_cnn():
    """A small CNN with every op NCHWc must carry: a 3-channel stem conv, max pooling,
    a grouped conv, a depthwise conv, a batch norm that cannot fold (after an add),
    concat, residual adds, Clip, global average pooling."""
    rng = np.random.default_rng(7)

    def w(*shape):
        return rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5

    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[3, 3], pads=[1] * 4,
                         strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1"], ["c1"], pads=[1] * 4, group=2),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "wd"], ["d1"], pads=[1] * 4, group=32),
        helper.make_node("Conv", ["d1", "w2"], ["c2"]),
        helper.make_node("Conv", ["p0", "w3"], ["c3"]),
        helper.make_node("Concat", ["c2", "c3"], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "w4"], ["c4"], pads=[1] * 4),
        helper.make_node("Add", ["c4", "p0"], ["s"]),
        helper.make_node("BatchNormalization", ["s", "g", "be", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
        helper.make_node("GlobalAveragePool", ["y"], ["gap"]),
    ]
    inits = [("w0", w(16, 3, 3, 3)), ("b0", rng.standard_normal(16)),
             ("w1", w(32, 8, 3, 3)), ("wd", w(32, 1, 3, 3)), ("w2", w(16, 32, 1, 1)),
             ("w3", w(16, 16, 1, 1)), ("w4", w(16, 32, 3, 3)),
             ("g", rng.uniform(0.5, 2, 16)), ("be", rng.standard_normal(16)),
             ("m", rng.standard_normal(16)), ("v", rng.uniform(0.5, 2, 16)),
             ("lo", np.float32(0)), ("hi", np.float32(6))]
    return make_model(nodes, [("x", [1, 3, 32, 32])],
                      [("y", [1, 16, 8, 8]), ("gap", [1, 16, 1, 1])], inits, "residual_cnn")


def _graph(model):
    mod = import_model(model, {}, None).mod
    return tvm.transform.Sequential([relax.transform.FoldConstant(), FoldBatchNorm()])(mod)


def _calls_to(mod, names):
    found = []
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(
                func, lambda e: found.append(e.args[0].name_hint) if isinstance(e, relax.Call)
                and getattr(e.op, "name", "") == "relax.call_tir"
                and e.args[0].name_hint.rstrip("0123456789") in names else None)
    return found


def test_block_size_follows_the_simd_width():
    assert block_size(64, 16) == 16 and block_size(64, 8) == 8 and block_size(64, 4) == 4
    assert block_size(24, 16) == 8  # MobileNetV2's 24-channel layers: half registers
    assert block_size(3, 16) == 3  # the RGB input: one block holds all channels
    assert block_size(50, 16) is None  # blocks of 2 cannot vectorise: stays NCHW


@pytest.mark.parametrize("target, lanes", [(AVX512, 16), (AVX2, 8), (NEON, 4)])
def test_only_the_entry_and_exit_transforms_remain(target, lanes):
    with tvm.target.Target(target):
        mod = convert_layout(_graph(residual_cnn()), "NCHWc", lanes)
    ops = count_ops(mod)
    # one block() of the input, one unblock() per output; no transposes anywhere
    assert ops["relax.layout_transform"] == 3
    assert ops.get("relax.permute_dims", 0) == 0
    assert ops.get("relax.nn.conv2d", 0) == 0  # every conv became a blocked kernel
    convs = _calls_to(mod, CONV_KERNELS)
    assert len(convs) == 6 and sum(c.startswith("depthwise") for c in convs) == 1
    assert ops["relax.nn.max_pool2d"] == 1 and ops["relax.concat"] == 1
    # blocked tensors have the target's SIMD width as their inner axis
    shapes = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: shapes.append(e.ty.shape) if isinstance(e, relax.Call)
        and getattr(e.op, "name", "") == "relax.nn.max_pool2d" else None)
    assert [int(d) for d in shapes[0]] == [1, 16 // lanes, 8, 8, lanes]


def test_weights_are_packed_at_compile_time():
    with tvm.target.Target(AVX512):
        mod = convert_layout(_graph(residual_cnn()), "NCHWc", 16)
    weights = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: weights.append(e.args[1].fields[1]) if isinstance(e, relax.Call)
        and getattr(e.op, "name", "") == "relax.call_tir"
        and e.args[0].name_hint.startswith(CONV_KERNELS) else None)
    assert weights and all(isinstance(w, tvm.ir.expr.Constant) for w in weights)
    shapes = sorted(tuple(int(d) for d in w.ty.shape) for w in weights)
    assert (1, 1, 3, 3, 3, 16) in shapes  # the stem: OIHW3i16o
    assert (2, 1, 3, 3, 8, 16) in shapes  # grouped 2 x (8 -> 16): OIHW8i16o, per group
    assert (2, 3, 3, 16) in shapes  # depthwise: one 3x3 kernel per lane


def test_a_runtime_weight_is_packed_in_the_graph():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 6, 6), "float32"))
    wt = relax.Var("w", relax.TensorType((32, 16, 3, 3), "float32"))
    with bb.function("main", [x, wt]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.relu(relax.op.nn.conv2d(x, wt)))
        bb.emit_func_output(out)
    mod = to_blocked_layout(bb.get(), 16)
    assert count_ops(mod)["relax.layout_transform"] == 3  # x, w in; the result out
    rng = np.random.default_rng(1)
    data = rng.standard_normal((1, 16, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    with tvm.target.Target(AVX512):
        lowered = relax.transform.LegalizeOps()(mod)
    vm = relax.VirtualMachine(tvm.compile(lowered, target=tvm.target.Target(AVX512)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(data), tvm.runtime.tensor(weight)).numpy()
    import torch

    expected = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(data),
                                                     torch.from_numpy(weight))).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", [AVX512, AVX2])
def test_blocked_outputs_match_onnx_runtime(target):
    model = residual_cnn()
    compiled = mcc.compile(model, layout="NCHWc", target=target)  # also verified vs ORT
    assert "mcc.ConvertLayout(NCHWc)" in compiled.metadata["passes"]
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    got = compiled.run({"x": x})
    np.testing.assert_allclose(got["y"], expected[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["gap"], expected[1], rtol=1e-4, atol=1e-4)


def test_blocked_conv_kernels_get_the_vectorised_rule():
    from mcc.schedule.rules import TiledReduction

    with tvm.target.Target(AVX512) as target:
        mod = convert_layout(_graph(residual_cnn()), "NCHWc", 16)
        mod = relax.transform.LegalizeOps()(mod)
    for name in ("conv2d_nchwc", "depthwise_conv2d_nchwc"):
        sch = TiledReduction().apply(mod[name], target, False)
        assert sch is not None, name
        text = sch.mod.script()
        assert "T.parallel" in text and "T.vectorized" in text, name


def test_nchwc_needs_a_cpu_target():
    assert resolve_layout("NCHWc", "llvm") == "NCHWc"
    with pytest.raises(MccError, match="NCHWc is a CPU layout"):
        resolve_layout("NCHWc", "cuda")


def test_cli_layout_nchwc(cli, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(residual_cnn().SerializeToString())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--layout", "NCHWc")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.so").exists() and "ok" in result.output  # verified vs ORT


def test_clip_with_scalar_bounds_stays_blocked():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 6, 6), "float32"))
    weight = np.random.default_rng(2).standard_normal((16, 16, 1, 1)).astype(np.float32)
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = bb.emit(relax.op.nn.conv2d(x, relax.const(weight)))
            out = bb.emit_output(relax.op.clip(conv, 0.0, 6.0))
        bb.emit_func_output(out)
    mod = to_blocked_layout(bb.get(), 16)
    ops = count_ops(mod)
    assert ops["relax.layout_transform"] == 2 and ops["relax.clip"] == 1
    clips = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: clips.append(e) if isinstance(e, relax.Call)
        and getattr(e.op, "name", "") == "relax.clip" else None)
    assert clips[0].ty.ndim == 5  # clipped in the blocked layout
    data = np.random.default_rng(3).standard_normal((1, 16, 6, 6)).astype(np.float32)
    with tvm.target.Target(AVX512):
        lowered = relax.transform.LegalizeOps()(mod)
    vm = relax.VirtualMachine(tvm.compile(lowered, target=tvm.target.Target(AVX512)), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(data)).numpy()
    expected = np.clip(np.einsum("oi,nihw->nohw", weight[:, :, 0, 0], data), 0, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
