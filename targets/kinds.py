"""What each kind of target (CPU via LLVM, NVIDIA GPU via CUDA) means for the compiler.

Every question the rest of mcc asks that depends on the kind of target (layouts, Winograd,
schedule rules, export, runtime libraries, emulation, devices, the tuning outputs check)
is answered here, by the :class:`TargetKind` a preset has (``TargetPreset.kind``) or that
:func:`kind_of` finds for a TVM target or kind name. Code outside ``targets/`` asks these
objects instead of comparing kind names.
"""

from __future__ import annotations


class TargetKind:
    """A target kind with no support in mcc beyond TVM's defaults (the base answers)."""

    #: CPU SIMD layouts and Winograd are CPU-only; the others hold for every kind
    layouts_refused: tuple[str, ...] = ("NCHWc",)
    #: the layouts ``--layout auto`` may pick, default first
    auto_layouts: tuple[str, ...] = ("NCHW",)
    #: 3x3 stride-1 convs as Winograd (mcc.passes.winograd)
    winograd: bool = False
    #: NHWC convs reshaped for the vectorised CPU schedules: grouped convs split per group,
    #: output channels padded to whole vectors (mcc.passes.split_grouped_conv, pad_channels)
    conv_rewrites: bool = False
    #: which default schedule rules apply (mcc.schedule.rules.RULES_BY_KIND); None: none
    schedule_rules: str | None = None
    #: MetaSchedule flushes the CPU caches before each timed run
    cache_flush: bool = False
    #: a module's device code is compiled separately (nvcc) and packed into the .so
    compiles_device_code: bool = False
    #: TVM runtime libraries a deployed module needs beside the common ones
    extra_runtime_libs: tuple[str, ...] = ()
    #: kernels are CPU code from LLVM: the TIR rewrites for its code generation apply
    #: (mcc.build.vector_round, stack_tiles)
    llvm_kernels: bool = False

    def __init__(self, name: str):
        self.name = name  # TVM's name of the kind (``target.kind.name``)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def device_type(self) -> str:
        """The device kernels run on, as MetaSchedule's runners name it."""
        return self.name

    def intrinsics_key(self, arch: str) -> str:
        """Which tensor intrinsics (mcc.tuning.workers) a module of ``arch`` can use."""
        return self.name

    def checks_outputs_in_tuning(self) -> bool:
        """Whether tuning can run candidate kernels here to check their outputs."""
        return False

    def why_not_runnable(self, preset) -> str | None:
        """Why a module of this kind cannot run here (after the CPU checks), or None."""
        return f"target kind '{self.name}' has no runtime here"

    def why_not_emulated(self, preset) -> str | None:
        """Why this kind of module cannot run under an emulator here, or None (CPU only)."""
        return f"no emulator for target kind '{self.name}'"

    def device(self):
        """The TVM device a module of this kind runs on here."""
        import tvm

        return tvm.device(self.name, 0)

    def check_layout(self, layout: str) -> None:
        """Raise MccError if an explicit ``--layout`` does not apply to this kind."""
        from mcc.errors import MccError

        if layout in self.layouts_refused:
            raise MccError(f"--layout {layout} is a CPU layout (SIMD-wide channel blocks); "
                           f"{self.name} target given: use NHWC or auto")


class CpuKind(TargetKind):
    """CPUs through LLVM: mcc's own schedule rules, blocked layouts, Winograd, qemu."""

    layouts_refused = ()
    # NHWC and NCHWc are measured against each other where the module runs here
    # (mcc.build.pipeline explains the numbers); NHWC is the default
    auto_layouts = ("NHWC", "NCHWc")
    winograd = True
    conv_rewrites = True
    schedule_rules = "cpu"
    cache_flush = True
    llvm_kernels = True

    @property
    def device_type(self) -> str:
        return "cpu"

    def intrinsics_key(self, arch: str) -> str:
        return arch

    def checks_outputs_in_tuning(self) -> bool:
        return True

    def why_not_runnable(self, preset) -> str | None:
        return None

    def why_not_emulated(self, preset) -> str | None:
        return None  # the emulator for the preset's architecture decides

    def device(self):
        import tvm

        return tvm.cpu()


class CudaKind(TargetKind):
    """NVIDIA GPUs: dlight's rules, NHWC, device code by nvcc, the CUDA runtime library."""

    auto_layouts = ("NHWC",)
    schedule_rules = "gpu"
    compiles_device_code = True
    extra_runtime_libs = ("libtvm_runtime_cuda.so",)

    def why_not_runnable(self, preset) -> str | None:
        from mcc.targets.gpu import local_gpu_arch

        gpu = local_gpu_arch()
        if gpu is None:
            return "it needs an NVIDIA GPU with the CUDA driver, and this machine has none"
        if _sm_number(gpu) < _sm_number(preset.cuda_arch):
            return f"its device code is for {preset.cuda_arch} and this GPU is {gpu}"
        return None

    def why_not_emulated(self, preset) -> str | None:
        return "CUDA kernels need a GPU"

    def device(self):
        import tvm

        return tvm.cuda(0)


def _sm_number(arch: str | None) -> int:
    digits = "".join(ch for ch in str(arch or "") if ch.isdigit())
    return int(digits) if digits else 0


KINDS: dict[str, TargetKind] = {"llvm": CpuKind("llvm"), "cuda": CudaKind("cuda")}


def kind_of(target) -> TargetKind:
    """The kind of a TVM target, a target dict (``{"kind": ...}``), a preset or a kind name."""
    if isinstance(target, TargetKind):
        return target
    if isinstance(target, str):
        name = target
    elif isinstance(target, dict):
        name = target.get("kind", "")
    elif hasattr(target, "tvm") and isinstance(target.tvm, dict):  # a TargetPreset
        name = target.tvm["kind"]
    else:  # tvm.target.Target
        name = target.kind.name
    return KINDS.get(name) or TargetKind(name)
