"""The TVM runtime libraries a deployed module needs, for its CPU architecture.

A module needs ``libtvm_runtime.so`` (the Relax VM) and ``libtvm_ffi.so``
(which it depends on); a CUDA module also ``libtvm_runtime_cuda.so``, which
itself needs the CUDA driver and ``libcudart.so.13`` on the device. For this
machine's architecture they come from the installed ``apache-tvm`` /
``apache-tvm-ffi``; for another they are taken from the matching wheels of the
same versions on PyPI, downloaded once (``pip download``) and cached under
``~/.cache/mcc`` (or ``$MCC_CACHE_DIR``).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from mcc.errors import MccError

ELF_MACHINES = {"x86_64": 62, "aarch64": 183}
WHEEL_PLATFORMS = {"aarch64": "manylinux_2_28_aarch64", "x86_64": "manylinux_2_28_x86_64"}

# library file -> (distribution, path inside its wheel)
LIBRARIES = {
    "libtvm_runtime.so": ("apache-tvm", "tvm/lib/libtvm_runtime.so"),
    "libtvm_ffi.so": ("apache-tvm-ffi", "tvm_ffi/lib/libtvm_ffi.so"),
    "libtvm_runtime_cuda.so": ("apache-tvm", "tvm/lib/libtvm_runtime_cuda.so"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("MCC_CACHE_DIR") or Path.home() / ".cache" / "mcc")


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def runtime_library_dir(arch: str, progress=None) -> Path:
    """A directory holding all of ``LIBRARIES`` built for ``arch``."""
    if arch == host_arch():
        return _installed_libraries()
    if arch not in WHEEL_PLATFORMS:
        raise MccError(f"no TVM runtime wheels are known for architecture '{arch}'")
    versions = {dist: metadata.version(dist) for dist in ("apache-tvm", "apache-tvm-ffi")}
    tag = "-".join(f"{d}{v}" for d, v in versions.items())
    out = cache_dir() / "runtime" / f"{arch}-{tag}"
    if all((out / name).is_file() for name in LIBRARIES):
        return out
    wheels = _download_wheels(arch, versions, progress)
    out.mkdir(parents=True, exist_ok=True)
    for name, (dist, member) in LIBRARIES.items():
        with zipfile.ZipFile(wheels[dist]) as wheel:
            data = wheel.read(member)
        check_elf_arch(data, arch, f"{member} in {wheels[dist].name}")
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / name)
    return out


def check_elf_arch(data: bytes, arch: str, what: str) -> None:
    machine = int.from_bytes(data[18:20], "little") if data[:4] == b"\x7fELF" else None
    if machine != ELF_MACHINES.get(arch):
        raise MccError(f"{what} is not an {arch} shared library")


def _installed_libraries() -> Path:
    import tvm
    import tvm_ffi

    tvm_lib = Path(tvm.__file__).parent / "lib"
    ffi_lib = Path(tvm_ffi.__file__).parent / "lib"
    out = cache_dir() / "runtime" / f"{host_arch()}-installed"
    out.mkdir(parents=True, exist_ok=True)
    for name, (dist, _) in LIBRARIES.items():
        source = (ffi_lib if dist == "apache-tvm-ffi" else tvm_lib) / name
        if not source.is_file():
            raise MccError(f"the installed {dist} has no {name} ({source})")
        link = out / name
        if link.is_symlink() and link.resolve() == source.resolve():
            continue
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source)
        tmp.replace(link)  # atomic, also when another process does the same
    return out


def _download_wheels(arch: str, versions: dict[str, str], progress=None) -> dict[str, Path]:
    """The ``arch`` wheels of ``versions``, from the cache or PyPI."""
    wheel_dir = cache_dir() / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    platform_tag = WHEEL_PLATFORMS[arch]
    found = _find_wheels(wheel_dir, versions, arch)
    missing = [d for d in versions if d not in found]
    if missing:
        if progress:
            progress(f"[mcc] fetching the {arch} TVM runtime from PyPI: "
                     + ", ".join(f"{d}=={versions[d]}" for d in missing))
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--platform", platform_tag,
               "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
               "-d", str(wheel_dir)] + [f"{d}=={versions[d]}" for d in missing]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            raise MccError(f"cannot fetch the {arch} TVM runtime wheels from PyPI "
                           f"({', '.join(missing)}): {lines[-1] if lines else 'pip failed'}; "
                           f"or put them in {wheel_dir}")
        found = _find_wheels(wheel_dir, versions, arch)
    for dist in versions:
        if dist not in found:
            raise MccError(f"no {arch} wheel of {dist}=={versions[dist]} in {wheel_dir}")
    return found


def _find_wheels(wheel_dir: Path, versions: dict[str, str], arch: str) -> dict[str, Path]:
    found = {}
    for dist, version in versions.items():
        stem = f"{dist.replace('-', '_')}-{version}-"
        for wheel in sorted(wheel_dir.glob(f"{stem}*.whl")):
            if wheel.name.endswith(f"_{arch}.whl"):
                found[dist] = wheel
    return found
