"""ARM end to end: `mcc compile --target rpi4` (verified under qemu-aarch64), `mcc package`,
then the bundle's own runner under qemu-aarch64; its outputs must match ONNX Runtime on x86."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from conftest import make_model

TOOLS = ["aarch64-linux-gnu-g++", "qemu-aarch64", "cmake"]
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install g++-aarch64-linux-gnu "
                          "qemu-user cmake; `make test` installs them when run as root)")

QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]


def small_cnn() -> onnx.ModelProto:
    """conv-relu (stride 2) -> conv-relu -> global average pool -> flatten -> dense."""
    rng = np.random.default_rng(3)
    return make_model(
        [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                          strides=[2, 2]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c2"], ["r2"]),
         helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)],
        [("image", [1, 3, 32, 32])], [("logits", [1, 10])],
        [("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), ("b1", rng.standard_normal(8) * 0.1),
         ("w2", rng.standard_normal((16, 8, 3, 3)) * 0.2), ("b2", rng.standard_normal(16) * 0.1),
         ("w3", rng.standard_normal((10, 16)) * 0.3), ("b3", rng.standard_normal(10) * 0.1)],
        "small_cnn")


def require_aarch64_runtime():
    """Skip when the aarch64 TVM runtime (from PyPI wheels, cached after the first time)
    cannot be fetched: offline machines."""
    from mcc.deploy.runtime_libs import runtime_library_dir
    from mcc.errors import MccError

    try:
        runtime_library_dir("aarch64")
    except MccError as err:
        if "cannot fetch" in str(err):
            pytest.skip(f"no aarch64 TVM runtime available: {err}")
        raise


@pytest.fixture(scope="module")
def rpi4_bundle(tmp_path_factory):
    require_aarch64_runtime()
    from click.testing import CliRunner

    from mcc.cli import main

    root = tmp_path_factory.mktemp("arm")
    onnx.save(small_cnn(), str(root / "cnn.onnx"))
    runner = CliRunner()
    result = runner.invoke(main, ["compile", str(root / "cnn.onnx"), "--target", "rpi4",
                                  "-o", str(root / "cnn.so")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # compile itself ran the aarch64 binary under qemu and compared it with ONNX Runtime
    verify_line = next(ln for ln in result.stderr.splitlines() if ln.startswith("[mcc] verify  "))
    assert "vs onnxruntime" in verify_line and verify_line.endswith("ok (under qemu-aarch64)")
    result = runner.invoke(main, ["package", str(root / "cnn.so"), "-o", str(root / "bundle")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "bundle", root / "cnn.onnx"


def test_bundle_holds_aarch64_binaries(rpi4_bundle):
    bundle, _ = rpi4_bundle
    for path in ["cnn.so", "bin/mcc_run", "lib/libtvm_runtime.so", "lib/libtvm_ffi.so"]:
        header = (bundle / path).read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, path
    readme = (bundle / "README.md").read_text()
    assert "./bin/mcc_run cnn.so -i image=inputs/image.npy -o outputs/" in readme
    assert "qemu-aarch64 -L /usr/aarch64-linux-gnu" in readme


def test_rpi4_module_under_qemu_matches_onnxruntime(rpi4_bundle, tmp_path):
    bundle, onnx_path = rpi4_bundle
    image = np.random.default_rng(11).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    result = subprocess.run(QEMU + ["./bin/mcc_run", "cnn.so", "-i",
                                    f"image={tmp_path / 'image.npy'}", "-o", str(tmp_path),
                                    "--repeat", "2"],
                            capture_output=True, text=True, cwd=bundle, timeout=300)
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "logits.npy")
    expected = ort.InferenceSession(str(onnx_path)).run(None, {"image": image})[0]
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_readme_command_runs_under_qemu(rpi4_bundle):
    bundle, _ = rpi4_bundle
    readme = (bundle / "README.md").read_text()
    command = next(ln for ln in readme.splitlines() if ln.startswith("qemu-aarch64"))
    result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=bundle,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ran cnn.so on cpu: 20 run(s)" in result.stdout
    assert (bundle / "outputs" / "logits.npy").is_file()


def test_arm_runner_refuses_an_x86_module(rpi4_bundle, tmp_path):
    import mcc

    bundle, onnx_path = rpi4_bundle
    mcc.compile(str(onnx_path), verify=False).export(tmp_path / "x86.so")
    result = subprocess.run(QEMU + ["./bin/mcc_run", str(tmp_path / "x86.so"), "--list"],
                            capture_output=True, text=True, cwd=bundle, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: '{tmp_path / 'x86.so'}' is built for x86 (x86_64) "
                                     "and cannot run on this machine: it is aarch64")


def test_python_runtime_refuses_the_arm_module(rpi4_bundle):
    import mcc
    from mcc.errors import MccError

    bundle, _ = rpi4_bundle
    with pytest.raises(MccError, match=r"built for rpi4 \(aarch64, cortex-a72\) and cannot run "
                                       r"on this machine: it is built for aarch64"):
        mcc.load(bundle / "cnn.so")


def test_cross_compiler_override_is_used(tmp_path, rpi4_bundle):
    from click.testing import CliRunner

    from conftest import assert_one_line_error
    from mcc.cli import main

    _, onnx_path = rpi4_bundle
    out = tmp_path / "m.so"
    result = CliRunner().invoke(main, ["compile", str(onnx_path), "--target", "rpi4",
                                       "--cross-compiler", "no-such-g++", "-o", str(out)])
    assert_one_line_error(result, "needs 'no-such-g++', which is not on PATH")
    assert not out.exists()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc for the CUDA kernels")
def test_jetson_orin_module_and_bundle(rpi4_bundle, tmp_path):
    """aarch64 host code + sm_87 device code; without a GPU the runner says so."""
    import mcc
    from mcc.build.cuda import device_code_info

    _, onnx_path = rpi4_bundle
    mcc.compile(str(onnx_path), target="jetson-orin").export(tmp_path / "orin.so")
    header = (tmp_path / "orin.so").read_bytes()[:20]
    assert int.from_bytes(header[18:20], "little") == 183
    assert [(f["sass"], f["ptx"]) for f in device_code_info(tmp_path / "orin.so")] == [
        (["sm_87"], ["sm_87"])]
    bundle = mcc.bundle(tmp_path / "orin.so", tmp_path / "bundle")
    assert (bundle / "lib" / "libtvm_runtime_cuda.so").is_file()
    result = subprocess.run(QEMU + ["./bin/mcc_run", "orin.so", "--list"], capture_output=True,
                            text=True, cwd=bundle, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 'orin.so' is a CUDA module and cannot run on this "
                                    "machine: it needs an NVIDIA GPU")


def test_emulated_verification_can_fail(rpi4_bundle, tmp_path):
    """The qemu check is a real comparison: at zero tolerance it fails and writes nothing."""
    from click.testing import CliRunner

    from conftest import assert_one_line_error
    from mcc.cli import main

    _, onnx_path = rpi4_bundle
    out = tmp_path / "m.so"
    result = CliRunner().invoke(main, ["compile", str(onnx_path), "--target", "rpi4", "--rtol",
                                       "0", "--atol", "1e-12", "-o", str(out)])
    assert_one_line_error(result, "verification failed: output 'logits' differs from onnxruntime")
    assert "FAILED (under qemu-aarch64)" in result.stderr
    assert not out.exists()
