"""Round half to even as a vector instruction on LLVM targets, rewritten in the scheduled TIR.

TOPI's ``round`` (what Relax's ``round`` and so every int8 quantize step lower to) is
``tirx.nearbyint``. TVM's loop vectorizer does not widen that call: a vectorised loop
around it comes out scalar, and LLVM re-vectorises it with gathers and scatters (a
[128, 384] quantize-to-uint8 kernel: 42 us, against 4.4 us for the same loop with
``tirx.round``). On LLVM targets ``tirx.round`` is lowered to the same ``llvm.nearbyint``
(round half to even in the default rounding mode, ``vrndscaleps`` on x86), so the
rewrite changes no result, only how the loop is vectorised. Other targets (CUDA: ``round``
is ``roundf``, half away from zero) are left alone.

Like mcc.build.nan it runs inside the TIR pipeline (here before its vectorizer), after the
schedules, so kernel workloads (what tuning records match) are unchanged.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

_NEARBYINT = tvm.ir.Op.get("tirx.nearbyint")


def _llvm(func) -> bool:
    """Whether ``func`` is CPU code from LLVM (a function without a target: the host's)."""
    from mcc.targets.kinds import kind_of

    target = func.attrs.get("target") if func.attrs is not None else None
    return target is None or kind_of(target).llvm_kernels


def vector_round_func(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with ``nearbyint(x)`` as ``round(x)`` where the target is LLVM."""
    if not _llvm(func):
        return func

    def rewrite(call):
        if call.op.same_as(_NEARBYINT):
            return tirx.round(call.args[0])
        return call

    return tvm_ffi.structural_map(func, [(tvm.ir.Call, rewrite)])


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="mcc.VectorRound")
def VectorRound(func, _mod, _ctx):  # noqa: N802 (a pass, named like TVM's)
    return vector_round_func(func)
