"""mcc's default schedule rules: fast kernels without tuning.

A rule looks at one PrimFunc and returns a schedule, or None when the kernel
is not its pattern (dlight's ``ScheduleRule`` interface). ``rules_for(target)``
gives the ordered list for a target kind; ``mcc.schedule`` tries each rule per
kernel after tuning records, first match wins. To add rules (int8 / VNNI, GPU),
write a module here and add its rule objects to ``RULES_BY_KIND`` (keyed by the
``schedule_rules`` of mcc.targets.kinds' target kinds).

    TiledReduction  conv2d (NHWC, NCHW), dense / matmul / batch matmul,
                    depthwise conv, pooling: register-blocked, vectorised,
                    parallel, with fused epilogues (tiled_reduction.py)
    dlight GEMV     matrix-vector products
    RowReduction    softmax, layer norm, RMS norm: rows in parallel, partial results
                    in vector lanes (row_reduction.py); dlight's Reduction after it
    TotalReduction  min / max / sum of a whole tensor (dynamic quantization's range):
                    partial results in vector lanes (total_reduction.py)
    Injective       elementwise, broadcast, pad, transpose kernels (injective.py)
    ParallelFallback  anything else: outer spatial loops in parallel (injective.py)

The rules import TVM, mcc.passes and each other only.
"""

from __future__ import annotations

from mcc.schedule.rules.injective import Injective, ParallelFallback
from mcc.schedule.rules.row_reduction import RowReduction
from mcc.schedule.rules.tiled_reduction import TiledReduction
from mcc.schedule.rules.total_reduction import TotalReduction
from mcc.targets.cpu_info import CpuInfo, cpu_info


def _llvm_rules(fuse_epilogues: bool = True) -> list:
    from tvm.s_tir import dlight as dl

    return [TiledReduction(fuse_epilogue=fuse_epilogues), dl.cpu.GEMV(), RowReduction(),
            TotalReduction(), dl.cpu.Reduction(), Injective(), ParallelFallback()]


def _cuda_rules(fuse_epilogues: bool = True) -> list:
    """dlight's GPU rules; every GPU kernel must be thread-bound, hence Fallback last."""
    from tvm.s_tir import dlight as dl

    return [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(),
            dl.gpu.Fallback()]


# TargetKind.schedule_rules (mcc.targets.kinds) -> factory of the ordered rule list (a
# factory, so imports stay lazy)
RULES_BY_KIND = {
    "cpu": _llvm_rules,
    "gpu": _cuda_rules,
}


def rules_for(target, fuse_epilogues: bool = True) -> list:
    """The default schedule rules for ``target`` (empty for a kind without any).

    ``fuse_epilogues=False`` is the driver's fallback when a build fails: elementwise
    epilogues then run as separate loops instead of inside the conv / matmul kernel."""
    from mcc.targets.kinds import kind_of

    factory = RULES_BY_KIND.get(kind_of(target).schedule_rules)
    return factory(fuse_epilogues) if factory else []


__all__ = ["CpuInfo", "Injective", "ParallelFallback", "RULES_BY_KIND", "TiledReduction",
           "TotalReduction", "cpu_info", "rules_for"]
