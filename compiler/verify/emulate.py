"""Run a module built for another CPU under user-mode emulation, to verify it here.

An aarch64 module is run by the C++ runner cross-built for aarch64 (mcc.deploy.cpp_build)
under ``qemu-aarch64``, on ``.npy`` files, against the aarch64 TVM runtime. So
``mcc compile --target rpi4`` checks the very binary it delivers against ONNX
Runtime, where qemu and the cross toolchain are installed. Emulation runs
untuned kernels slowly; ``--no-verify`` skips it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcc.errors import MccError
from mcc.targets import TargetPreset


def why_not_emulated(target: TargetPreset) -> str | None:
    """Why ``target``'s modules cannot be run here under emulation, or None."""
    reason = target.why_not_emulated()
    if reason is not None:
        return reason
    qemu, sysroot = target.emulator
    if shutil.which(qemu) is None:
        return f"'{qemu}' is not installed (apt-get install qemu-user)"
    if not Path(sysroot).is_dir():
        return f"no {target.arch} C library in {sysroot}"
    if shutil.which("cmake") is None:
        return "cmake is not installed (needed to build the runner)"
    return None


def emulated_runner(target: TargetPreset, so_path: Path, output_names: list[str],
                    progress=None) -> Callable[[dict], dict[str, np.ndarray]]:
    """``run(feed) -> outputs`` for the module at ``so_path`` under qemu (MccError if not)."""
    from mcc.deploy.cpp_build import build_runner

    reason = why_not_emulated(target)
    if reason is not None:
        raise MccError(f"cannot emulate {target.name}: {reason}")
    build = build_runner(target.arch, target.cross_compiler, progress)
    qemu, sysroot = target.emulator

    def run(feed: dict) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="mcc-qemu-") as workdir:
            args = []
            for index, (name, value) in enumerate(feed.items()):
                file = Path(workdir) / f"in{index}.npy"
                np.save(file, np.ascontiguousarray(value))
                args += ["-i", f"{name}={file}"]
            out_dir = Path(workdir) / "out"
            env = dict(os.environ, LD_LIBRARY_PATH=str(build.lib_dir))
            proc = subprocess.run([qemu, "-L", sysroot, str(build.runner), str(so_path), *args,
                                   "-o", str(out_dir)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                lines = (proc.stderr or proc.stdout).strip().splitlines()
                raise MccError(f"the {target.name} module failed under {qemu}: "
                               f"{lines[-1] if lines else 'exit ' + str(proc.returncode)}")
            safe = {n: "".join(c if c.isalnum() or c in "-_." else "_" for c in n)
                    for n in output_names}
            return {name: np.load(out_dir / f"{safe[name]}.npy") for name in output_names}

    return run
