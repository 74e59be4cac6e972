"""Named compilation targets, kept as data in ``presets.json``.

A preset names a TVM target plus what mcc needs to know around it: the CPU
architecture the module runs on and the CPU flags it assumes (so a module for
a machine this one cannot emulate is built but not run here), the cross
compiler that links it when that architecture is not this machine's, and the
GPU architecture its device code is compiled for. A raw TVM target given as
JSON is accepted too, for anything the presets do not cover.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from mcc.errors import MccError, first_line
from mcc.targets.host import host_cpu_flags, host_tvm_target
from mcc.targets.kinds import TargetKind, kind_of


@dataclass(frozen=True)
class TargetPreset:
    """A resolved target: the TVM target dict and the facts mcc checks against it."""

    name: str
    description: str
    arch: str
    tvm: dict[str, Any] = field(hash=False)
    cpu_flags: tuple[str, ...] = ()
    cross_compiler: str | None = None  # C++ compiler that links for ``arch`` (None: the host's)

    @property
    def family(self) -> str:
        """Directory name under ``tuning_logs/`` for records of this target's kind."""
        if self.is_cuda:
            return f"cuda-{self.cuda_arch}"
        return f"{self.tvm['kind']}-{self.arch}"

    @property
    def kind(self) -> TargetKind:
        """What this target's kind (CPU, CUDA) means for the compiler (mcc.targets.kinds)."""
        return kind_of(self.tvm["kind"])

    @property
    def is_cuda(self) -> bool:
        return self.tvm["kind"] == "cuda"

    @property
    def cuda_arch(self) -> str | None:
        """The GPU architecture of the device code (``sm_90``), None for CPU targets."""
        return self.tvm.get("arch") if self.is_cuda else None

    @property
    def runtime_libs(self) -> tuple[str, ...]:
        """The TVM runtime libraries a deployed module of this target needs beside it."""
        return ("libtvm_runtime.so", "libtvm_ffi.so") + self.kind.extra_runtime_libs

    def runs_on_host(self) -> bool:
        """True when a module for this target can execute on this machine."""
        return self.why_not_runnable() is None

    def why_not_runnable(self) -> str | None:
        """Why a module for this target cannot execute here, or None when it can."""
        if self.arch != _host_arch():
            return f"it is built for {self.arch} and this machine is {_host_arch()}"
        missing = set(self.cpu_flags) - host_cpu_flags()
        if missing:
            return f"this CPU lacks {', '.join(sorted(missing))}"
        return self.kind.why_not_runnable(self)

    @property
    def emulator(self) -> tuple[str, str] | None:
        """(emulator, sysroot) that runs this target's CPU code on this machine, or None
        (this machine's architecture, or none known for it)."""
        if self.arch == _host_arch():
            return None
        return EMULATORS.get(self.arch)

    def why_not_emulated(self) -> str | None:
        """Why a module for this target cannot run here under an emulator (what the
        emulator itself needs installed aside), or None when one applies."""
        reason = self.kind.why_not_emulated(self)
        if reason is None and self.emulator is None:
            reason = f"no emulator for {self.arch}"
        return reason

    @property
    def checks_outputs_in_tuning(self) -> bool:
        """Whether tuning measured here can also check each candidate's outputs here."""
        return self.kind.checks_outputs_in_tuning() and self.runs_on_host()

    @property
    def intrinsics_key(self) -> str:
        """Which tensor intrinsics a module of this target can use (an arch or a kind)."""
        return self.kind.intrinsics_key(self.arch)

    def to_json(self) -> dict:
        data = {"name": self.name, "description": self.description, "arch": self.arch,
                "tvm": self.tvm,
                "cpu_flags": list(self.cpu_flags), "family": self.family}
        if self.cross_compiler:
            data["cross_compiler"] = self.cross_compiler
        return data

    @classmethod
    def from_json(cls, data: dict) -> TargetPreset:
        return cls(data["name"], data.get("description", ""), data["arch"], dict(data["tvm"]),
                   tuple(data.get("cpu_flags", ())), data.get("cross_compiler"))

    def with_cross_compiler(self, compiler: str | None) -> TargetPreset:
        """This preset linked by ``compiler`` instead (``--cross-compiler``)."""
        if not compiler:
            return self
        return TargetPreset(self.name, self.description, self.arch, dict(self.tvm),
                            self.cpu_flags, compiler)

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.tvm)

    def device(self):
        """The TVM device a module of this target runs on here (the first GPU for CUDA)."""
        return self.kind.device()


def device_type(target) -> str:
    """The device kernels for a TVM target run on, as MetaSchedule's runners name it."""
    return kind_of(target).device_type


# CPU flags that decide whether generated vector code can run on a machine.
VECTOR_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                          "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx_vnni",
                          "asimd", "asimddp", "asimdhp", "sve", "bf16"})


@cache
def _load_presets() -> dict[str, dict[str, Any]]:
    text = resources.files(__package__).joinpath("presets.json").read_text()
    return json.loads(text)


def describe_presets() -> list[tuple[str, str]]:
    """(name, description) for every preset, in file order, for ``mcc targets``."""
    return [(name, spec["description"]) for name, spec in _load_presets().items()]


# The emulator (user-mode qemu, its sysroot) that runs a module of each architecture here.
EMULATORS = {"aarch64": ("qemu-aarch64", "/usr/aarch64-linux-gnu")}

# The cross compiler for a module of each architecture, when this machine is another.
CROSS_COMPILERS = {"aarch64": "aarch64-linux-gnu-g++", "x86_64": "x86_64-linux-gnu-g++"}


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def resolve_target(spec: str | dict | None = None) -> TargetPreset:
    """Turn a preset name, a raw TVM target (JSON text or dict) or None (host) into a preset."""
    if spec is None:
        spec = "x86"
    if isinstance(spec, TargetPreset):
        return spec
    if isinstance(spec, dict) or (isinstance(spec, str) and spec.lstrip().startswith("{")):
        return _from_raw(spec)
    presets = _load_presets()
    if spec not in presets:
        raise MccError(f"unknown target '{spec}'; valid targets: {', '.join(presets)} "
                       "(or a TVM target as JSON, e.g. '{\"kind\": \"llvm\"}')")
    data = presets[spec]
    if data.get("detect_host"):
        if _host_arch() != data["arch"]:
            raise MccError(f"target '{spec}' means this machine's CPU, but this machine is "
                           f"{_host_arch()}, not {data['arch']}")
        # Record the vector features this CPU has, so the module refuses to load on a
        # machine without them instead of dying of an illegal instruction.
        return TargetPreset(spec, data["description"], data["arch"], host_tvm_target(),
                            tuple(sorted(host_cpu_flags() & VECTOR_FLAGS)))
    if data.get("detect_gpu"):
        from mcc.targets.gpu import local_gpu_target

        return TargetPreset(spec, data["description"], _host_arch(), local_gpu_target(spec))
    return TargetPreset(spec, data["description"], data["arch"], dict(data["tvm"]),
                        tuple(data.get("cpu_flags", ())), _cross_compiler(data["arch"]))


def _cross_compiler(arch: str) -> str | None:
    """The cross compiler for ``arch`` when this machine is another architecture."""
    return None if arch == _host_arch() else CROSS_COMPILERS.get(arch)


def _from_raw(spec: str | dict) -> TargetPreset:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as err:
            raise MccError(f"target is not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise MccError("a raw target must be a JSON object with a 'kind', "
                       "e.g. {\"kind\": \"llvm\", \"mcpu\": \"znver4\"}")
    if spec["kind"] not in ("llvm", "cuda"):
        raise MccError(f"target kind '{spec['kind']}' is not supported; mcc builds for "
                       "kinds 'llvm' (x86-64 and aarch64 CPUs) and 'cuda' (NVIDIA GPUs)")
    if spec["kind"] == "cuda" and not str(spec.get("arch", "")).startswith("sm_"):
        raise MccError("a raw cuda target needs its GPU architecture, e.g. "
                       "{\"kind\": \"cuda\", \"arch\": \"sm_86\"}")
    try:
        import tvm

        tvm.target.Target(spec)
    except Exception as err:  # TVM validates keys and values; report one line of it
        raise MccError(f"invalid TVM target {json.dumps(spec)}: {first_line(err)}") from None
    spec = dict(spec)
    if spec["kind"] == "cuda":
        spec.setdefault("host", {"kind": "llvm", "mtriple": f"{_host_arch()}-linux-gnu"})
    cpu = spec["host"] if spec["kind"] == "cuda" else spec
    triple = cpu.get("mtriple", "")
    arch = triple.split("-")[0] if triple else _host_arch()
    arch = {"arm64": "aarch64"}.get(arch, arch)
    return TargetPreset("custom", "raw TVM target", arch, spec, (), _cross_compiler(arch))
