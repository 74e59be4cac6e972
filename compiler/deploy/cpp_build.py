"""Build the C++ runtime (``libmcc_runtime.a``, ``mcc_run``) for a CPU architecture.

CMake over ``runtime/cpp`` against apache-tvm-ffi's headers and the TVM runtime
libraries of that architecture (mcc.deploy.runtime_libs). Builds are cached under
``~/.cache/mcc/runner/``, keyed by the sources, the compiler and the libraries,
so a bundle costs one build per architecture.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcc.build.toolchain import require_tool
from mcc.deploy.runtime_libs import cache_dir, check_elf_arch, host_arch, runtime_library_dir
from mcc.errors import MccError
from mcc.targets import CROSS_COMPILERS

TOOLCHAIN_FILES = {"aarch64": "cmake/aarch64-linux-gnu.cmake"}


@dataclass(frozen=True)
class RunnerBuild:
    runner: Path  # the mcc_run executable
    library: Path  # libmcc_runtime.a
    header_dir: Path  # holds mcc/runtime.h
    lib_dir: Path  # the TVM runtime libraries it links against


def _sources() -> Path:
    from mcc.cpp import SOURCE_DIR

    return SOURCE_DIR


def _fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    source = _sources()
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix in {".cc", ".h", ".txt", ".cmake"}:
            digest.update(str(path.relative_to(source)).encode())
            digest.update(path.read_bytes())
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def build_runner(arch: str, cross_compiler: str | None = None, progress=None) -> RunnerBuild:
    """``mcc_run`` and ``libmcc_runtime.a`` for ``arch`` (cross-compiled if not this machine's)."""
    import tvm_ffi

    require_tool("cmake", "building the C++ runner")
    cross = arch != host_arch()
    compiler = cross_compiler or (CROSS_COMPILERS.get(arch) if cross else "g++")
    if compiler is None:
        raise MccError(f"no cross compiler is known for {arch}; pass one (--cross-compiler)")
    require_tool(compiler, f"building the C++ runner for {arch}")
    lib_dir = runtime_library_dir(arch, progress)
    ffi_root = Path(tvm_ffi.__file__).resolve().parent
    key = _fingerprint(arch, compiler, str(lib_dir), str(ffi_root))
    out = cache_dir() / "runner" / f"{arch}-{key}"
    if not (out / "mcc_run").is_file():
        if progress:
            progress(f"[mcc] building the C++ runner for {arch} with {compiler}")
        _cmake_build(out, arch, compiler, cross, lib_dir, ffi_root)
    check_elf_arch((out / "mcc_run").read_bytes()[:64], arch, "the built mcc_run")
    return RunnerBuild(out / "mcc_run", out / "libmcc_runtime.a",
                       _sources() / "include", lib_dir)


def _cmake_build(out: Path, arch: str, compiler: str, cross: bool, lib_dir: Path,
                 ffi_root: Path) -> None:
    source = _sources()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcc-cmake-", dir=out.parent) as build:
        configure = ["cmake", "-S", str(source), "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                     f"-DTVM_FFI_ROOT={ffi_root}", f"-DTVM_FFI_LIB_DIR={lib_dir}",
                     f"-DTVM_RUNTIME_DIR={lib_dir}", f"-DCMAKE_CXX_COMPILER={compiler}"]
        if cross and arch in TOOLCHAIN_FILES:
            configure.append(f"-DCMAKE_TOOLCHAIN_FILE={source / TOOLCHAIN_FILES[arch]}")
        for cmd in (configure, ["cmake", "--build", build, "-j", "2"]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                text = (proc.stderr or proc.stdout).strip().splitlines()
                errors = [ln for ln in text if "error" in ln.lower()] or text
                raise MccError(f"building the C++ runner for {arch} failed: "
                               f"{errors[0] if errors else 'cmake exit ' + str(proc.returncode)}")
        staging = Path(build) / "out"
        staging.mkdir()
        for name in ("mcc_run", "libmcc_runtime.a"):
            shutil.copy2(Path(build) / name, staging / name)
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        try:
            staging.rename(out)
        except OSError:  # another process finished the same build first
            if not (out / "mcc_run").is_file():
                raise
