"""Target kinds behind one interface (mcc.targets.kinds): the compiler asks a target's kind
what it means (layouts, Winograd, rules, export, runtime libraries, emulation, devices)
instead of branching on kind names. Read from the source; nothing is imported but targets.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mcc.targets import TargetPreset, device_type, resolve_target
from mcc.targets.kinds import CpuKind, CudaKind, TargetKind, kind_of

ROOT = Path(__file__).resolve().parents[2]

# Schedule rules are written per kind: a CPU rule declining a GPU target is its own business.
MAY_CHECK_KIND_NAMES = {
    "compiler/schedule/rules/base.py",
    "compiler/schedule/rules/bf16.py",
    "compiler/schedule/rules/bf16_isa.py",
    "compiler/schedule/rules/int8.py",
}


def _kind_comparisons(path: Path) -> list[str]:
    """Lines of ``path`` that branch on a target kind's name (ast: compared names)."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "is_cuda":
            found.append(f"{node.lineno}: is_cuda")
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                text = ast.unparse(side)
                if text.endswith(("kind.name", "['kind']", "get('kind')")) or \
                        re.fullmatch(r".*\.kind", text) and _is_kind_literal(node):
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
                    break
    return found


def _is_kind_literal(node: ast.Compare) -> bool:
    """A comparison with a target kind's name ("llvm", "cuda", ...)."""
    names = ("llvm", "cuda", "rocm", "opencl", "vulkan", "metal")
    return any(isinstance(c, ast.Constant) and c.value in names
               for c in (node.left, *node.comparators))


def test_no_kind_branches_outside_targets():
    bad = []
    for directory in ("compiler", "passes"):
        for path in sorted((ROOT / directory).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in MAY_CHECK_KIND_NAMES:
                continue
            bad += [f"{rel}:{line}" for line in _kind_comparisons(path)]
            if re.search(r"\bis_cuda\b", path.read_text()):  # in text too: getattr, docs
                bad.append(f"{rel}: mentions is_cuda")
    assert bad == []


@pytest.mark.parametrize("source, expected", [
    ("if preset.is_cuda:\n    pass\n", True),
    ("x = target.kind.name == 'llvm'\n", True),
    ("x = t['kind'] == 'cuda'\n", True),
    ("x = spec.kind == 'cuda'\n", True),
    ("x = dtype.kind == 'f'\n", False),
    ("x = preset.kind.winograd\n", False),
])
def test_the_scan_finds_kind_branches(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert bool(_kind_comparisons(path)) == expected


def test_kinds_answer_for_presets():
    cpu = resolve_target("x86-avx2")
    gpu = resolve_target("cuda-sm90")
    assert isinstance(cpu.kind, CpuKind) and isinstance(gpu.kind, CudaKind)
    assert cpu.kind.auto_layouts == ("NHWC", "NCHWc") and gpu.kind.auto_layouts == ("NHWC",)
    assert cpu.kind.winograd and not gpu.kind.winograd
    assert (cpu.kind.schedule_rules, gpu.kind.schedule_rules) == ("cpu", "gpu")
    assert gpu.kind.compiles_device_code and not cpu.kind.compiles_device_code
    assert cpu.runtime_libs == ("libtvm_runtime.so", "libtvm_ffi.so")
    assert gpu.runtime_libs[-1] == "libtvm_runtime_cuda.so"
    assert cpu.intrinsics_key == "x86_64" and gpu.intrinsics_key == "cuda"
    assert not gpu.checks_outputs_in_tuning
    assert gpu.why_not_emulated() == "CUDA kernels need a GPU"
    assert (device_type(cpu.tvm_target()), device_type(gpu.tvm_target())) == ("cpu", "cuda")


def test_emulator_per_architecture():
    arm = resolve_target("rpi4")
    if arm.arch == _host():
        pytest.skip("this machine is aarch64")
    assert arm.emulator == ("qemu-aarch64", "/usr/aarch64-linux-gnu")
    assert arm.why_not_emulated() is None
    assert resolve_target("x86-avx2").emulator is None


def _host() -> str:
    from mcc.targets import _host_arch

    return _host_arch()


def test_unknown_kind_gets_the_base_answers():
    other = kind_of("rocm")
    assert type(other) is TargetKind and other.auto_layouts == ("NCHW",)
    assert other.device_type == "rocm" and not other.winograd and other.schedule_rules is None
    preset = TargetPreset("t", "", _host(), {"kind": "rocm"})
    assert preset.why_not_runnable() == "target kind 'rocm' has no runtime here"
