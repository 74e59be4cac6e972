"""Missing compilers are named, with the package that provides them."""

import pytest

from mcc.build.toolchain import check_toolchain, require_tool
from mcc.errors import MccError
from mcc.targets import resolve_target


def test_missing_cross_compiler_names_the_apt_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MccError, match=r"target rpi4 \(aarch64\) is cross-compiled and needs "
                                       r"'aarch64-linux-gnu-g\+\+'.*apt-get install "
                                       r"g\+\+-aarch64-linux-gnu"):
        check_toolchain(resolve_target("rpi4"))


def test_unknown_tool_says_to_put_it_on_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MccError, match="needs 'my-g\\+\\+', which is not on PATH; install it"):
        require_tool("my-g++", "building")


def test_missing_nvcc_for_cuda(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MccError, match="cuda-sm80 compiles CUDA device code and needs 'nvcc'"):
        check_toolchain(resolve_target("cuda-sm80"))


def test_emulation_needs_qemu(monkeypatch):
    from mcc.verify.emulate import why_not_emulated

    monkeypatch.setenv("PATH", "/nonexistent")
    assert "'qemu-aarch64' is not installed" in why_not_emulated(resolve_target("rpi4"))
    assert why_not_emulated(resolve_target("jetson-orin")) == "CUDA kernels need a GPU"
    assert why_not_emulated(resolve_target("x86")) == "no emulator for x86_64"
