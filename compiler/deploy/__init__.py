"""``mcc package``: a deploy bundle for a compiled module's architecture.

    DIR/model.so                 the module (code, weights, metadata)
    DIR/bin/mcc_run              the C++ runner, built for the module's CPU
    DIR/lib/libtvm_runtime.so    TVM runtime (Relax VM) for that CPU
    DIR/lib/libtvm_ffi.so        its FFI library
    DIR/lib/libtvm_runtime_cuda.so   CUDA modules only
    DIR/lib/libmcc_runtime.a + include/mcc/runtime.h   to link into your own program
    DIR/inputs/<name>.npy        seeded example inputs
    DIR/README.md                how to run it on the board

The bundle is assembled in a temp directory and renamed into place, so a
failure leaves nothing behind.

Deploy may import the runtime, mcc.build.toolchain (the cross compilers),
mcc.targets and mcc.errors; never the driver, tuning or verify stages.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mcc.deploy.runtime_libs import check_elf_arch
from mcc.errors import MccError
from mcc.runtime.metadata import read_metadata
from mcc.runtime.tensors import TensorSpec
from mcc.targets import TargetPreset


def bundle(module_path: str | Path, out_dir: str | Path, cross_compiler: str | None = None,
           force: bool = False, progress=None) -> Path:
    """Write a deploy bundle for ``module_path`` to ``out_dir``; returns ``out_dir``."""
    from mcc.deploy.cpp_build import build_runner

    module_path, out_dir = Path(module_path), Path(out_dir)
    metadata = read_metadata(module_path)
    target = metadata["target"]
    arch = target["arch"]
    check_elf_arch(module_path.read_bytes()[:64], arch, f"'{module_path}'")
    preset = TargetPreset.from_json(target)
    cuda = preset.kind.compiles_device_code
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise MccError(f"'{out_dir}' exists and is not empty; pick a new directory or pass "
                       "--force to replace it")
    if not out_dir.parent.is_dir():
        raise MccError(f"cannot write '{out_dir}': directory '{out_dir.parent}' does not exist")

    build = build_runner(arch, cross_compiler or target.get("cross_compiler"), progress)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        root = Path(tmp) / "bundle"
        for sub in ("bin", "lib", "include/mcc", "inputs"):
            (root / sub).mkdir(parents=True)
        shutil.copyfile(module_path, root / module_path.name)
        shutil.copy2(build.runner, root / "bin" / "mcc_run")
        shutil.copyfile(build.library, root / "lib" / "libmcc_runtime.a")
        shutil.copyfile(build.header_dir / "mcc" / "runtime.h", root / "include/mcc/runtime.h")
        for name in preset.runtime_libs:
            shutil.copyfile(build.lib_dir / name, root / "lib" / name)
        inputs = [TensorSpec.from_json(t) for t in metadata["inputs"]]
        from mcc.frontends.feeds import module_rules

        feeds = _example_inputs(inputs, root / "inputs", module_rules(metadata))
        binaries = [root / module_path.name, root / "bin" / "mcc_run",
                    *(root / "lib" / name for name in preset.runtime_libs)]
        requirements = _libc_requirements(binaries)
        (root / "README.md").write_text(_readme(module_path.name, metadata, feeds, cuda,
                                                requirements))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        root.rename(out_dir)
    if progress:
        progress(f"[mcc] bundle for {target['name']} ({arch}) in {out_dir}")
    return out_dir


def _example_inputs(inputs: list[TensorSpec], directory: Path,
                    rules: dict | None = None) -> list[tuple[str, str]]:
    """Seeded inputs (symbolic dimensions set to 1) so the bundle runs out of the box;
    integer inputs in the ranges of ``rules`` (mcc.frontends.feeds)."""
    from mcc.runtime.tensors import random_inputs

    fixed = [TensorSpec(t.name, tuple(d if isinstance(d, int) else 1 for d in t.shape), t.dtype)
             for t in inputs]
    feeds = []
    for name, array in random_inputs(fixed, seed=0, rules=rules).items():
        file = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) + ".npy"
        np.save(directory / file, np.ascontiguousarray(array))
        feeds.append((name, f"inputs/{file}"))
    return feeds


def _libc_requirements(binaries: list[Path]) -> str:
    """The newest glibc / libstdc++ symbol versions the bundle's binaries ask for."""
    glibc, glibcxx = (2, 17), 0
    for path in binaries:
        data = path.read_bytes()
        for major, minor in re.findall(rb"GLIBC_(\d+)\.(\d+)", data):
            glibc = max(glibc, (int(major), int(minor)))
        for patch in re.findall(rb"GLIBCXX_3\.4\.(\d+)", data):
            glibcxx = max(glibcxx, int(patch))
    text = f"glibc {glibc[0]}.{glibc[1]} or newer"
    return text + (f" and libstdc++ with GLIBCXX_3.4.{glibcxx}" if glibcxx else "")


def _readme(module_name: str, metadata: dict, feeds: list[tuple[str, str]], cuda: bool,
            requirements: str) -> str:
    target = metadata["target"]
    arch = target["arch"]
    args = " ".join(f"-i {name}={file}" for name, file in feeds)
    run = f"./bin/mcc_run {module_name} {args} -o outputs/ --repeat 20"

    def spec(t: dict) -> str:
        return f"`{t['name']}`: {t['dtype']}[{','.join(str(d) for d in t['shape'])}]"

    lines = [
        f"# {module_name}: deploy bundle for {target['name']} ({arch})",
        "",
        f"Compiled by mcc {metadata.get('mcc_version')} with TVM {metadata.get('tvm_version')} "
        f"for `{target['name']}`: {target.get('description', '')}.",
        "",
        "Inputs: " + ", ".join(spec(t) for t in metadata["inputs"]),
        "",
        "Outputs: " + ", ".join(spec(t) for t in metadata["outputs"]),
        "",
        "## Run it on the board",
        "",
        "Copy this whole directory to the device (the runner finds `lib/` next to `bin/`):",
        "",
        "```sh",
        "scp -r . user@board:model-bundle/   # or rsync / a USB stick",
        "ssh user@board",
        "cd model-bundle",
        run,
        "```",
        "",
        "`inputs/` holds seeded example inputs; give your own as `-i NAME=FILE.npy` "
        "(C-ordered .npy, the dtype and shape above). Each output is written as "
        "`outputs/<name>.npy`; `--repeat N` prints the median / min / mean latency. "
        "`./bin/mcc_run " + module_name + " --list` prints the inputs and outputs.",
        "",
        f"The device needs a 64-bit Linux with {requirements}; nothing is installed there.",
    ]
    if cuda:
        lines += ["", "This is a CUDA module: the device also needs the NVIDIA driver "
                  "(`libcuda.so.1`) and the CUDA 13 runtime (`libcudart.so.13`) on its library "
                  "path. Without a GPU the runner says so and exits with status 1."]
    emulator = TargetPreset.from_json(target).emulator
    if emulator is not None:
        emulator_bin, sysroot = emulator
        lines += ["", "To try it on an x86-64 Linux machine first, under emulation:", "",
                  "```sh", "apt-get install qemu-user   # Debian / Ubuntu",
                  f"{emulator_bin} -L {sysroot} {run}", "```"]
    lines += [
        "",
        "## Use it from your own C++ program",
        "",
        "```cpp",
        '#include "mcc/runtime.h"',
        "",
        f'mcc::Module model = mcc::Module::Load("{module_name}");',
        "for (const mcc::TensorInfo& t : model.inputs()) { /* t.name, t.shape, t.dtype */ }",
        "model.SetInput(name, data_pointer, shape, \"float32\");   // once per input",
        "model.Run();",
        "mcc::HostTensor out = model.GetOutput(0);                // or by name",
        "const float* values = out.data<float>();",
        "```",
        "",
        "Build it with this bundle's header and libraries (C++17; errors are `mcc::Error`):",
        "",
        "```sh",
        "g++ -std=c++17 app.cc -Iinclude lib/libmcc_runtime.a \\",
        "    -Llib -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -Wl,--as-needed -ldl \\",
        "    -Wl,-rpath,'$ORIGIN/lib' -o app",
        "```",
        "",
        "`-Wl,--no-as-needed` matters: `libtvm_runtime.so` registers the loader that "
        "the module needs, although the program calls none of its functions directly.",
        "",
    ]
    return "\n".join(lines)
