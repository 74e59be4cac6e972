"""int8 on models where some or all ops cannot be int8: they stay fp32 and the build
succeeds (issue 16: --quantize int8 builds on every model of the real-model corpus)."""

import numpy as np
from onnx import helper
from tvm import relax

import mcc
from conftest import TINY_MODELS, make_model
from mcc.driver.quantization import prepare
from mcc.passes.quantize import find_sites
from mcc.targets import resolve_target


def test_weight_computed_from_constants_outside_dataflow_is_folded():
    """A matmul weight made by take + permute_dims of a packed constant, outside a dataflow
    block (as in a model with an ONNX If), is a constant by the time sites are found."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, 4], "float32"))
    packed = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    with bb.function("main", [x]):  # no dataflow block: what control flow leaves
        w = bb.emit(relax.op.take(relax.const(packed), relax.const(1, "int64"), axis=0))
        y = bb.emit(relax.op.matmul(x, bb.emit(relax.op.permute_dims(w))))
        bb.emit_func_output(y)
    target = resolve_target(None).tvm_target()
    sites = find_sites(prepare(bb.get(), target))
    assert [(s.name, s.skip) for s in sites] == [("matmul_0", "")]
    np.testing.assert_array_equal(sites[0].call.args[1].value.numpy(), packed[1].T)


def test_nothing_to_quantize_builds_fp32_with_a_warning(save_onnx, cli, tmp_path):
    path = save_onnx(TINY_MODELS["two_outputs"](), "none.onnx")
    out = tmp_path / "none.so"
    result = cli("compile", path, "-o", out, "--quantize", "int8", "--calibration", "random")
    assert result.exit_code == 0, result.output
    assert "nothing to quantize" in result.output and "stays fp32" in result.output
    module = mcc.load(out)
    quant = module.metadata["quantization"]
    assert quant["int8_ops"] == [] and quant["calibration"] is None
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    ref = mcc.load(mcc.compile(path).export(tmp_path / "fp32.so")).run({"x": x})
    got = module.run({"x": x})
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name])


def _conv_then_conv_transpose():
    """conv (int8) -> ConvTranspose (stays fp32): ConvertLayout used to carry the transposed
    conv to NHWC with the conv, where TVM cannot lower it."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "wt"], ["y"], strides=[2, 2],
                              pads=[1, 1, 1, 1], output_padding=[1, 1])]
    inits = {"w": rng.standard_normal((8, 3, 3, 3)) * 0.3,
             "wt": rng.standard_normal((8, 4, 3, 3)) * 0.3}
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 16, 16])], inits.items())


def test_conv_transpose_stays_fp32_beside_int8_convs(save_onnx, tmp_path):
    path = save_onnx(_conv_then_conv_transpose(), "convt.onnx")
    compiled = mcc.compile(path, quantize="int8", calibration="random", verify=False)
    quant = compiled.metadata["quantization"]
    assert quant["int8_ops"] == ["conv2d_0"]
    assert quant["accuracy"]["outputs"]["y"]["cosine"] > 0.99


def test_failed_build_retries_int8_kernels_with_unfused_epilogues(save_onnx, monkeypatch):
    """The driver's fallback for a kernel TVM fails to lower (e.g. "Buffer T_add_intermediate
    is used before its definition") rebuilds with unfused epilogues: the int8 kernels too,
    and the module keeps its int8 ops."""
    import mcc.build.lower as lower
    import mcc.schedule.rules.int8 as int8_rule
    from mcc.errors import MccError

    real_build, real_kernel = lower.build, int8_rule.schedule_kernel
    builds, fused = [], []

    def failing_first(mod, target):  # what a TVM lowering bug in a fused kernel looks like
        if any("qconv2d" in gv.name_hint for gv in mod.functions):
            builds.append(mod)
        if len(builds) == 1:
            raise MccError("build failed for target llvm: Buffer T_add_intermediate is used "
                           "before its definition")
        return real_build(mod, target)

    def spy(func, *args, **kwargs):
        fused.append(kwargs.get("fuse_epilogue", args[2] if len(args) > 2 else True))
        return real_kernel(func, *args, **kwargs)

    path = save_onnx(_conv_then_conv_transpose(), "convt.onnx")
    calibrated = mcc.compile(path, quantize="int8", calibration="random", verify=False)
    monkeypatch.setattr(lower, "build", failing_first)
    monkeypatch.setattr(int8_rule, "schedule_kernel", spy)
    compiled = mcc.compile(path, quantize="int8", calibration="random", verify=False)
    assert len(builds) == 2 and fused[-1] is False and True in fused
    assert compiled.metadata["quantization"]["int8_ops"] == ["conv2d_0"]
    want = calibrated.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"]
    got = compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"]
    assert abs(got - want) < 1e-6


def test_scalar_input_calibrates(save_onnx):
    """A 0-d input (a sample rate) reaches the calibration runs as 0-d."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Mul", ["h", "s"], ["y"])]
    model = make_model(nodes, [("x", [1, 8]), ("s", [])], [("y", [1, 4])],
                       [("w", rng.standard_normal((8, 4)))])
    path = save_onnx(model, "scalar.onnx")
    compiled = mcc.compile(path, quantize="int8", calibration="random", verify=False)
    assert compiled.metadata["quantization"]["int8_ops"] == ["matmul_0"]


def test_model_failing_on_a_calibration_sample_is_a_one_line_error():
    """A sample the fp32 model rejects at run time (a random sample rate that selects an If
    branch which cannot run) is an MccError naming the sample, not a TVM ValueError."""
    import pytest

    from mcc.errors import MccError
    from mcc.passes.calibrate import calibrate

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, 4], "float32"))
    with bb.function("main", [x]):
        y = bb.emit(relax.op.nn.relu(x))
        bb.emit_func_output(y)

    def run_module(mod):
        def run(feed):
            raise ValueError("Check failed: (ptr->ndim == ndim) is false")
        return run

    with pytest.raises(MccError, match=r"fails on sample 0: .*Check failed"):
        calibrate(bb.get(), [y], ["y"], [{"x": np.zeros((1, 4), np.float32)}], "minmax",
                  run_module, ["y"])
