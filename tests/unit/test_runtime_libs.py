"""Where a bundle's TVM runtime libraries come from, and what happens when they cannot."""

import subprocess
import zipfile

import pytest

from mcc.deploy import runtime_libs
from mcc.errors import MccError


def test_host_arch_uses_the_installed_libraries(tmp_path, monkeypatch):
    monkeypatch.setenv("MCC_CACHE_DIR", str(tmp_path))
    out = runtime_libs.runtime_library_dir(runtime_libs.host_arch())
    for name in runtime_libs.LIBRARIES:
        data = (out / name).read_bytes()[:64]
        runtime_libs.check_elf_arch(data, runtime_libs.host_arch(), name)


def _fake_wheel(path, member, machine):
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, b"\x7fELF" + bytes(14) + machine.to_bytes(2, "little"))


def test_other_arch_is_taken_from_cached_wheels(tmp_path, monkeypatch):
    from importlib import metadata

    monkeypatch.setenv("MCC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no download expected"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tvm_v, ffi_v = metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")
    tvm_wheel = wheels / f"apache_tvm-{tvm_v}-py3-none-manylinux_2_28_aarch64.whl"
    with zipfile.ZipFile(tvm_wheel, "w") as wheel:
        for member in ("tvm/lib/libtvm_runtime.so", "tvm/lib/libtvm_runtime_cuda.so"):
            wheel.writestr(member, b"\x7fELF" + bytes(14) + (183).to_bytes(2, "little"))
    _fake_wheel(wheels / f"apache_tvm_ffi-{ffi_v}-cp311-cp311-manylinux_2_28_aarch64.whl",
                "tvm_ffi/lib/libtvm_ffi.so", 183)
    out = runtime_libs.runtime_library_dir("aarch64")
    assert sorted(p.name for p in out.iterdir()) == sorted(runtime_libs.LIBRARIES)


def test_wrong_arch_library_in_a_wheel_is_refused(tmp_path, monkeypatch):
    from importlib import metadata

    monkeypatch.setenv("MCC_CACHE_DIR", str(tmp_path))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    tvm_v, ffi_v = metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")
    with zipfile.ZipFile(wheels / f"apache_tvm-{tvm_v}-py3-none-x_aarch64.whl", "w") as wheel:
        for member in ("tvm/lib/libtvm_runtime.so", "tvm/lib/libtvm_runtime_cuda.so"):
            wheel.writestr(member, b"\x7fELF" + bytes(14) + (62).to_bytes(2, "little"))
    _fake_wheel(wheels / f"apache_tvm_ffi-{ffi_v}-cp311-x_aarch64.whl",
                "tvm_ffi/lib/libtvm_ffi.so", 183)
    with pytest.raises(MccError, match="libtvm_runtime.so in apache_tvm.* is not an aarch64"):
        runtime_libs.runtime_library_dir("aarch64")


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MCC_CACHE_DIR", str(tmp_path))

    def offline(cmd, **kwargs):
        assert "--platform" in cmd and "manylinux_2_28_aarch64" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", offline)
    with pytest.raises(MccError, match="cannot fetch the aarch64 TVM runtime wheels from PyPI "
                                       r"\(apache-tvm, apache-tvm-ffi\): ERROR: No matching"):
        runtime_libs.runtime_library_dir("aarch64")
