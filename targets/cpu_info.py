"""What a CPU target offers a schedule: vector lanes, vector registers, cores.

Derived from the TVM target (its ``mcpu`` / ``mattr`` as LLVM understands
them), never from the machine that compiles, so cross-compiles get the right
vector width.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CpuInfo:
    vector_bits: int  # widest SIMD register the target has
    vector_registers: int  # architectural SIMD registers (accumulators + operands)
    cores: int  # threads the parallel loops should feed

    def lanes(self, dtype: str) -> int:
        """Elements of ``dtype`` per SIMD register (at least 1)."""
        bits = int("".join(ch for ch in dtype if ch.isdigit()) or 32)
        return max(1, self.vector_bits // bits)


def cpu_info(target) -> CpuInfo:
    """Vector width and register file of an ``llvm`` target (x86 AVX-512/AVX2/SSE, ARM NEON)."""
    from tvm.target.codegen import llvm_cpu_has_features

    def has(feature: str) -> bool:
        try:
            return bool(llvm_cpu_has_features(feature, target))
        except Exception:  # a feature name this LLVM target does not know
            return False

    triple = str(target.attrs.get("mtriple", ""))
    cores = int(target.attrs.get("num-cores", 0) or 0) or _host_cores()
    if triple.startswith(("aarch64", "arm64")) or has("neon"):
        return CpuInfo(128, 32, cores)
    if has("avx512f"):
        return CpuInfo(512, 32, cores)
    if has("avx2") or has("avx"):
        return CpuInfo(256, 16, cores)
    return CpuInfo(128, 16, cores)


def has_fp16_arithmetic(target) -> bool:
    """An aarch64 ``llvm`` target with ARMv8.2-A FP16 arithmetic (``+fullfp16``: ``fmla
    v.8h``; Cortex-A76/A78/X1, Neoverse N1/V1). False for every other target: x86 CPUs
    convert fp16 to fp32 to compute."""
    if target.kind.name != "llvm" or not is_aarch64(target):
        return False
    from tvm.target.codegen import llvm_cpu_has_features

    try:
        return bool(llvm_cpu_has_features("fullfp16", target))
    except Exception:  # a CPU LLVM does not know: no fp16 arithmetic assumed
        return False


def arm_without_fp16(target) -> bool:
    """An aarch64 ``llvm`` target without FP16 arithmetic (Cortex-A72, generic ARMv8.0-A):
    where ``--precision fp16`` is refused."""
    return target.kind.name == "llvm" and is_aarch64(target) and not has_fp16_arithmetic(target)


def is_aarch64(target) -> bool:
    return str(target.attrs.get("mtriple", "")).startswith(("aarch64", "arm64"))


def _host_cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
