"""CUDA modules built on a machine without a GPU hold compiled device code for their arch."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from conftest import assert_one_line_error, conv_bn_model, matmul_softmax_model

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None,
                                reason="needs nvcc (the CUDA toolkit) to compile device code")


@pytest.fixture(scope="module")
def cuda_modules(tmp_path_factory):
    """conv_bn for sm_90 (via the CLI) and a symbolic-batch MLP for sm_75 (via the API)."""
    from click.testing import CliRunner

    import mcc
    from mcc.cli import main

    root = tmp_path_factory.mktemp("cuda")
    onnx.save(conv_bn_model(), str(root / "conv_bn.onnx"))
    onnx.save(matmul_softmax_model(), str(root / "mlp.onnx"))
    result = CliRunner().invoke(main, ["compile", str(root / "conv_bn.onnx"), "--target",
                                       "cuda-sm90", "-o", str(root / "conv_bn.so")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    compiled = mcc.compile(str(root / "mlp.onnx"), target="cuda-sm75")
    compiled.export(root / "mlp.so")
    return {"conv_bn": (root / "conv_bn.so", "sm_90", result.stderr),
            "mlp": (root / "mlp.so", "sm_75", compiled.report)}


@pytest.mark.parametrize("name", ["conv_bn", "mlp"])
def test_module_holds_sass_and_ptx_for_its_arch(cuda_modules, name):
    from mcc.build.cuda import device_code_info

    path, arch, _ = cuda_modules[name]
    fatbins = device_code_info(path)
    assert len(fatbins) == 1, fatbins
    assert fatbins[0]["sass"] == [arch] and fatbins[0]["ptx"] == [arch]
    data = path.read_bytes()
    assert b"__global__" not in data  # no CUDA source is left to JIT
    # The serialized CUDA module is [kind "cuda"][size][fmt "fatbin"][function table][fatbin],
    # the layout TVM's CUDA runtime loads (ffi.Module.load_from_bytes.cuda).
    import re
    import struct

    entry = re.search(re.escape(struct.pack("<Q", 4) + b"cuda") + b"(.{8})"
                      + re.escape(struct.pack("<Q", 6) + b"fatbin"), data, re.S)
    assert entry is not None
    size = struct.unpack("<Q", entry.group(1))[0]
    payload = data[entry.end(1):entry.end(1) + size]
    fatbin_at = payload.find(struct.pack("<I", 0xBA55ED50))
    assert fatbin_at > 0 and struct.unpack_from("<Q", payload, fatbin_at - 8)[0] == \
        len(payload) - fatbin_at  # the code field is the whole fatbin, last in the entry


def test_all_gpu_kernels_are_scheduled_by_default_rules(cuda_modules):
    from mcc.runtime.metadata import read_metadata

    path, _, stderr = cuda_modules["mlp"]
    schedule = read_metadata(path)["schedule"]
    assert schedule["naive"] == 0 and schedule["from_default_rules"] == schedule["tasks"] > 0
    _, _, log = cuda_modules["conv_bn"]
    assert "target cuda-sm90 (sm_90)" in log
    assert "verify   skipped: a cuda-sm90 module cannot run here" in log


def test_metadata_records_the_cuda_target(cuda_modules):
    from mcc.runtime.metadata import read_metadata

    target = read_metadata(cuda_modules["conv_bn"][0])["target"]
    assert target["name"] == "cuda-sm90" and target["tvm"]["arch"] == "sm_90"
    assert target["family"] == "cuda-sm_90"


def test_load_without_gpu_is_a_clear_error(cuda_modules, cli, monkeypatch):
    from mcc.targets import gpu

    if gpu.local_gpu_arch() is not None:
        pytest.skip("this machine has a GPU")
    path = cuda_modules["conv_bn"][0]
    result = cli("run", path)
    assert_one_line_error(result, "built for cuda-sm90 (x86_64, sm_90) and cannot run on this "
                                  "machine: it needs an NVIDIA GPU with the CUDA driver")


def test_cpp_runner_without_gpu_is_a_clear_error(cuda_modules, tmp_path):
    import subprocess

    from mcc.targets import gpu

    if gpu.local_gpu_arch() is not None:
        pytest.skip("this machine has a GPU")
    if shutil.which("cmake") is None:
        pytest.skip("needs cmake")
    import mcc

    bundle = mcc.bundle(cuda_modules["conv_bn"][0], tmp_path / "bundle")
    assert (bundle / "lib" / "libtvm_runtime_cuda.so").is_file()
    assert "libcudart.so.13" in (bundle / "README.md").read_text()
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 12, 12), np.float32))
    result = subprocess.run([bundle / "bin" / "mcc_run", bundle / "conv_bn.so",
                             "-i", f"x={tmp_path / 'x.npy'}"], capture_output=True, text=True)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line
    assert "is a CUDA module and cannot run on this machine: it needs an NVIDIA GPU" in line


def test_info_shows_the_device_code(cuda_modules, cli):
    result = cli("info", cuda_modules["mlp"][0])
    assert result.exit_code == 0, result.output
    assert "SASS sm_75, PTX sm_75" in result.stdout


def test_int8_kernels_use_dp4a(tmp_path):
    """--quantize int8 for a CUDA preset: the int8 kernels are tensorized with __dp4a, and
    nvcc turns them into PTX dp4a instructions (checked at code level: no GPU here)."""
    import subprocess

    from mcc.driver.config import CompileConfig
    from mcc.driver.quantization import Quantizer, compile_relax
    from mcc.frontends import import_model
    from mcc.targets import resolve_target

    preset = resolve_target("cuda-sm80")
    config = CompileConfig(target=preset, quantize="int8", calibration="random")
    quantizer = Quantizer(import_model(conv_bn_model(), {}), config, preset.tvm_target(),
                          say=lambda m: None)
    executable = compile_relax(quantizer.run(), preset, preset.tvm_target())
    modules, cuda = list(executable.mod.imports), None
    while modules and cuda is None:  # the CUDA module hangs below the host (llvm) module
        module = modules.pop()
        cuda = module if module.kind == "cuda" else None
        modules += list(module.imports)
    source = cuda.inspect_source()
    assert "__dp4a(" in source
    (tmp_path / "k.cu").write_text(source)
    subprocess.run(["nvcc", "-ptx", "-arch=sm_80", "-o", str(tmp_path / "k.ptx"),
                    str(tmp_path / "k.cu")], check=True, capture_output=True)
    assert "dp4a.u32.s32" in (tmp_path / "k.ptx").read_text()
