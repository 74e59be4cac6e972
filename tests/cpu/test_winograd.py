"""mcc.Winograd: which convolutions it rewrites, and that the rewrite computes the same."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import helper
from tvm import relax

import mcc
from conftest import make_model
from mcc.frontends import import_model
from mcc.passes import Winograd, count_ops
from mcc.passes.winograd import transform_matrices, transform_weight
from mcc.pipeline import optimize
from mcc.targets.host import host_tvm_target


def _conv_module(hw=16, channels=(64, 64), stride=1, layout="NHWC", weight_const=True,
                 kernel=3, dtype="float32"):
    """main(x) = relu(conv2d(x, w) + b), NHWC/HWIO or NCHW/OIHW."""
    c_in, c_out = channels
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((kernel, kernel, c_in, c_out)) * 0.05).astype(dtype)
    shape = (1, hw, hw, c_in)
    if layout == "NCHW":
        w, shape = w.transpose(3, 2, 0, 1), (1, c_in, hw, hw)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    params = [x]
    if weight_const:
        weight = relax.const(w)
    else:
        weight = relax.Var("w", relax.TensorType(w.shape, dtype))
        params.append(weight)
    pad = kernel // 2
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(
                x, weight, strides=stride, padding=[pad] * 4, data_layout=layout,
                kernel_layout="HWIO" if layout == "NHWC" else "OIHW",
                out_dtype=dtype))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, feed):
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in feed]).numpy()


def test_weight_transform_and_matrices_give_the_direct_convolution():
    """One F(4x4, 3x3) tile in numpy: A^T [(G g G^T) * (B^T d B)] A is the 3x3 conv."""
    A, B, G = transform_matrices(4)
    rng = np.random.default_rng(1)
    tile = rng.standard_normal((6, 6))
    g = rng.standard_normal((3, 3))
    u = transform_weight(g.reshape(3, 3, 1, 1).astype(np.float64), 4).reshape(6, 6)
    np.testing.assert_allclose(u, G @ g @ G.T, rtol=1e-12)
    winograd = A.T @ (u * (B.T @ tile @ B)) @ A
    direct = np.array([[np.sum(tile[i:i + 3, j:j + 3] * g) for j in range(4)]
                       for i in range(4)])
    np.testing.assert_allclose(winograd, direct, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("hw", [16, 13])  # 13: output tiles overhang the map
def test_rewrite_replaces_the_conv_and_matches_it(hw):
    mod = _conv_module(hw=hw)
    rewritten = Winograd()(mod)
    ops = count_ops(rewritten)
    assert ops.get("relax.nn.conv2d", 0) == 0
    assert ops["relax.matmul"] == 1 and ops["relax.call_tir"] == 2  # the two transforms
    x = np.random.default_rng(2).standard_normal((1, hw, hw, 64)).astype(np.float32)
    np.testing.assert_allclose(_run(rewritten, [x]), _run(mod, [x]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", [
    {"stride": 2}, {"layout": "NCHW"}, {"weight_const": False}, {"hw": 8}, {"kernel": 5},
    {"channels": (32, 64)}, {"channels": (64, 32)},
])
def test_convs_it_does_not_handle_are_left_alone(variant):
    """Strided, NCHW, run-time weights, maps under 12x12 (too few tiles), 5x5 kernels,
    fewer than 64 channels (the transforms cost more than they save)."""
    mod = _conv_module(**variant)
    assert count_ops(Winograd()(mod)).get("relax.nn.conv2d", 0) == 1


def test_weights_over_the_size_limit_stay_direct():
    mod = _conv_module()  # transformed: 36 * 64 * 64 * 4 B = 0.56 MiB
    assert count_ops(Winograd(max_weight_mib=0.5)(mod)).get("relax.nn.conv2d", 0) == 1
    assert count_ops(Winograd(max_weight_mib=1.0)(mod)).get("relax.nn.conv2d", 0) == 0


def _onnx_conv_relu(hw=16):
    rng = np.random.default_rng(3)
    return make_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Add", ["r", "x"], ["y"])],
        [("x", [1, 64, hw, hw])], [("y", [1, 64, hw, hw])],
        [("w", rng.standard_normal((64, 64, 3, 3)) * 0.05), ("b", rng.standard_normal(64))],
        "conv_relu_add")


def _optimized(model, **options):
    """(module, pass names) after mcc's graph pipeline in NHWC for this CPU."""
    target = tvm.target.Target(host_tvm_target())
    mod, passes = optimize(import_model(model, {}, None).mod, target, layout="NHWC", **options)
    return mod, passes


def _kernel_names(model, **options):
    mod, passes = _optimized(model, **options)
    return passes, [gv.name_hint for gv, f in mod.functions_items()
                    if isinstance(f, tvm.tirx.PrimFunc)]


def test_pipeline_fuses_bias_relu_and_residual_into_the_output_transform():
    passes, names = _kernel_names(_onnx_conv_relu())
    assert "mcc.Winograd" in passes
    assert any(n.startswith("fused_winograd_output_transform_add") and "relu" in n
               for n in names), names
    assert not any("conv2d" in n for n in names), names
    passes, names = _kernel_names(_onnx_conv_relu(), winograd=False)
    assert "mcc.Winograd" not in passes and any("conv2d" in n for n in names)


def test_compiled_model_verifies_against_onnx_runtime():
    model = _onnx_conv_relu()
    compiled = mcc.compile(model, layout="NHWC")
    x = np.random.default_rng(4).standard_normal((1, 64, 16, 16)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-4)
    assert compiled.report["verify"]["ok"] and "mcc.Winograd" in compiled.metadata["passes"]


def test_cli_no_winograd_keeps_direct_convolutions(cli, save_onnx, tmp_path):
    import json

    out = tmp_path / "direct.so"
    result = cli("compile", save_onnx(_onnx_conv_relu()), "-o", out, "--layout", "NHWC",
                 "--no-winograd")
    assert result.exit_code == 0, result.output
    assert "mcc.Winograd" not in json.loads(cli("info", out, "--json").stdout)["passes"]


def test_default_rules_take_all_three_kernels():
    """Without tuning records, each Winograd kernel gets mcc's register-tiled rule."""
    from mcc.schedule_rules import TiledReduction

    target = tvm.target.Target(host_tvm_target())
    mod, _ = _optimized(_onnx_conv_relu())
    taken = [gv.name_hint for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and TiledReduction().apply(f, target, False)]
    assert sorted(taken) == ["fused_winograd_output_transform_add_relu_add1", "matmul",
                             "winograd_input_transform"]
