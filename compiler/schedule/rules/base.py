"""What every mcc CPU rule does first: check the target, normalise the PrimFunc's blocks."""

from __future__ import annotations

import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import ScheduleRule


class CpuRule(ScheduleRule):
    """A dlight-style rule for LLVM (CPU) targets."""

    def is_target_available(self, target) -> bool:
        return target.kind.name == "llvm"

    def _start(self, func, target):
        """(schedule, normalised blocks) of ``func``, or None when the rule cannot look at it."""
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        return (sch, blocks) if blocks else None


def loops(body) -> list[tirx.For]:
    """Every loop in ``body`` (a read-only walk)."""
    found: list[tirx.For] = []
    tvm_ffi.structural_walk(body, (tirx.For, found.append), order="post")
    return found
