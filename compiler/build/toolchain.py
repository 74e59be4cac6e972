"""The compilers that turn a built module into a ``.so`` for its target.

Host CPU modules link with the system ``g++``. Modules for another CPU
architecture link with a cross compiler (``aarch64-linux-gnu-g++`` for ARM,
or ``--cross-compiler``). CUDA modules additionally get their kernels compiled
to device code by ``nvcc`` (mcc.build.cuda) instead of keeping CUDA source.
"""

from __future__ import annotations

import shutil

from mcc.errors import MccError
from mcc.targets import TargetPreset

# Debian/Ubuntu package that provides each known cross compiler.
APT_PACKAGES = {
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "x86_64-linux-gnu-g++": "g++-x86-64-linux-gnu",
}


def require_tool(tool: str, purpose: str) -> str:
    """The path of ``tool``, or a one-line MccError saying what to install."""
    path = shutil.which(tool)
    if path is None:
        package = APT_PACKAGES.get(tool)
        hint = (f"install it with `apt-get install {package}`" if package
                else "install it or put it on PATH")
        raise MccError(f"{purpose} needs '{tool}', which is not on PATH; {hint}")
    return path


def check_toolchain(target: TargetPreset) -> None:
    """Fail early (before importing or building anything) if a needed compiler is missing."""
    if target.cross_compiler:
        require_tool(target.cross_compiler,
                     f"target {target.name} ({target.arch}) is cross-compiled and")
    if target.kind.compiles_device_code:
        require_tool("nvcc", f"target {target.name} compiles CUDA device code and")

