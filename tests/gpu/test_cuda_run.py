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
