"""On a machine with an NVIDIA GPU: CUDA modules run and match ONNX Runtime (CPU), from
Python and from the C++ runner. Skipped without a GPU (CI has none)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import conv_bn_model, matmul_softmax_model, residual_model


def _gpu():
    from mcc.targets.gpu import local_gpu_arch

    return local_gpu_arch()


pytestmark = pytest.mark.skipif(_gpu() is None or shutil.which("nvcc") is None,
                                reason="needs an NVIDIA GPU with its driver, and nvcc")


@pytest.mark.parametrize("model", [conv_bn_model, residual_model, matmul_softmax_model])
def test_cuda_module_matches_onnxruntime(model, tmp_path):
    import mcc

    path = tmp_path / "model.onnx"
    onnx.save(model(), str(path))
    compiled = mcc.compile(str(path), target="cuda", rtol=1e-3, atol=1e-4)  # verifies on GPU
    assert compiled.report["verify"]["ok"]
    compiled.export(tmp_path / "model.so")
    module = mcc.load(tmp_path / "model.so")
    rng = np.random.default_rng(5)
    feed = {t.name: rng.standard_normal([d if isinstance(d, int) else 4 for d in t.shape])
            .astype(t.dtype) for t in module.inputs}
    got = module.run(feed)
    expected = ort.InferenceSession(str(path)).run(None, feed)
    for value, ref in zip(got.values(), expected):
        np.testing.assert_allclose(value, ref, rtol=1e-3, atol=1e-4)


def test_cpp_runner_on_gpu_matches_python(tmp_path):
    import mcc

    path = tmp_path / "model.onnx"
    onnx.save(conv_bn_model(), str(path))
    mcc.compile(str(path), target="cuda").export(tmp_path / "model.so")
    bundle = mcc.bundle(tmp_path / "model.so", tmp_path / "bundle")
    x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run([bundle / "bin" / "mcc_run", bundle / "model.so", "-i",
                             f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "out"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "on cuda" in result.stdout
    expected = mcc.load(tmp_path / "model.so").run({"x": x})["y"]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), expected, rtol=1e-6,
                               atol=1e-6)


def test_int8_cuda_module_matches_the_x86_int8_build(tmp_path):
    """int8 on the GPU (dp4a kernels) against the x86 int8 build of the same calibration."""
    import mcc

    model, calibration = conv_bn_model(), tmp_path / "calibration.npz"
    np.savez(calibration, x=np.random.default_rng(2).standard_normal((4, 1, 3, 12, 12))
             .astype(np.float32))
    gpu = mcc.compile(model, target="cuda", quantize="int8", calibration=calibration)
    cpu = mcc.compile(model, quantize="int8", calibration=calibration)
    module = mcc.load(gpu.export(tmp_path / "int8.so"))
    feed = {"x": np.random.default_rng(6).standard_normal((1, 3, 12, 12)).astype(np.float32)}
    want = cpu.run(feed)["y"]
    # the same integer arithmetic; only the fp32 epilogue may round differently
    np.testing.assert_allclose(module.run(feed)["y"], want, rtol=0,
                               atol=0.02 * np.abs(want).max())


def test_nan_through_max_min_on_gpu_as_on_x86(tmp_path):
    """Relu, Clip, MaxPool, ReduceMax/Min, Max/Min fed NaN and +-inf: the GPU module keeps
    NaN where the x86 build does (benchmarks/gpu_check.py's nan_ops)."""
    from gpu_check import nan_ops_feed, nan_ops_model

    import mcc

    model, feed = nan_ops_model(), nan_ops_feed()
    gpu = mcc.load(mcc.compile(model, target="cuda", verify=False).export(tmp_path / "n.so"))
    want = mcc.compile(model).run(feed)
    for name, value in gpu.run(feed).items():
        np.testing.assert_array_equal(np.isnan(value), np.isnan(want[name]), err_msg=name)
        np.testing.assert_allclose(value, want[name], rtol=1e-6, atol=0, err_msg=name)


def test_float4_nan_max_min_kernel_on_gpu():
    """mcc.build.nan's compare-only vector form (CUDA has no != on float4), run as float4."""
    import tvm
    from gpu_check import vector_nan_inputs, vector_nan_library

    lib = vector_nan_library(_gpu())
    x, y = vector_nan_inputs()
    device = tvm.cuda(0)
    out = [tvm.runtime.tensor(np.zeros_like(x), device) for _ in range(2)]
    lib["main"](tvm.runtime.tensor(x, device), tvm.runtime.tensor(y, device), *out)
    nan_in = np.isnan(x) | np.isnan(y)
    for got, want in zip(out, (np.fmax(x, y), np.fmin(x, y))):
        got = got.numpy()
        np.testing.assert_array_equal(np.isnan(got), nan_in)
        np.testing.assert_array_equal(got[~nan_in], want[~nan_in])
