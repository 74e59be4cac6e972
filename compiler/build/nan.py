"""NaN through float max / min as in ONNX Runtime, rewritten in the scheduled TIR.

TVM lowers a float ``max(a, b)`` to ``a > b ? a : b`` (and ``min`` alike), which drops a
NaN in ``a``: ``Relu(NaN)`` came out 0, as did Clip, MaxPool, ReduceMax/Min and Max/Min,
where ONNX Runtime gives NaN. An ordered compare is false for a NaN, so the select's
*second* value comes through; each float ``Max``/``Min`` is rewritten around that:

- with a constant ``c`` (relu, clip, the clamps of fast exp / tanh / sigmoid):
  ``c > a ? c : a``, which LLVM makes the same single ``vmaxps``/``vminps`` as before
  with the operands swapped, the order in which x86 returns the NaN: no extra work;
- otherwise ``isnan(a) ? a : (a > b ? a : b)``: one compare and blend more (on vectors
  for a target other than LLVM, CUDA's float4 / half2 having no ``!=``:
  ``a > b ? a : (a <= b ? b : a + b)``).

These are IEEE semantics of LLVM's ``fcmp``/``select``, not of x86: other targets keep
the NaN too, perhaps with an extra instruction.

The rewrite runs at the end of the TIR lowering pipeline, long after the schedules are
applied (and after the reductions are lowered), so the
kernels' workloads (what tuning records are matched on) are the same as without it; a
graph-level rewrite (mcc.PropagateNaN, removed) changed 18 of MobileNetV2's 34 workloads.
Finite results are unchanged, and NaN in the clamps of fast exp / tanh / sigmoid gives
NaN. Only IEEE float types are touched: integer clamps (int8 requantize) and bfloat16
(stored as integers until legalized) are left as they are.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

PIPELINE = "mcc"  # the TIR pipeline tvm.compile gets: mcc.VectorRound, the s_tir pipeline,
# this pass, then the bf16 rounding and register-tile rewrites (mcc.build.bf16_convert,
# stack_tiles)

_FLOAT = 2  # DLDataTypeCode kDLFloat


def _is_float(expr) -> bool:
    dtype = expr.ty.dtype
    return dtype.type_code == _FLOAT and dtype.bits in (16, 32, 64)


def _constant(expr) -> bool:
    """A float constant, or one broadcast to a vector's lanes (never NaN in practice)."""
    if isinstance(expr, tirx.Broadcast):
        expr = expr.value
    return isinstance(expr, tirx.FloatImm)


def _keep_nan(expr, vector_isnan: bool = True):
    if not _is_float(expr):
        return expr
    a, b = expr.a, expr.b
    if _constant(a):
        a, b = b, a
    is_max = isinstance(expr, tirx.Max)
    if _constant(b):
        # max(a, c) as "c > a ? c : a": false for a NaN, so a comes through; LLVM makes
        # this one vmaxps (or vminps) with c first, the operand order x86 keeps a NaN of
        return tirx.Select(tirx.GT(b, a) if is_max else tirx.LT(b, a), b, a)
    # "a > b ? a : b" keeps b's NaN the same way
    first = tirx.Select(tirx.GT(a, b) if is_max else tirx.LT(a, b), a, b)
    if vector_isnan or expr.ty.dtype.lanes == 1:
        return tirx.Select(tirx.isnan(a), a, first)  # a's NaN: one compare and a blend
    # CUDA C has no != (what isnan becomes) on float4 / half2: compares only, and a + b
    # (NaN when either is) where neither a > b nor a <= b holds
    second = tirx.LE(a, b) if is_max else tirx.GE(a, b)
    return tirx.Select(tirx.GT(a, b) if is_max else tirx.LT(a, b), a,
                       tirx.Select(second, b, a + b))


def propagate_nan_func(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with each float Max / Min keeping a NaN operand."""
    target = func.attrs.get("target") if func.attrs is not None else None
    vector_isnan = getattr(getattr(target, "kind", None), "name", "llvm") == "llvm"

    def keep(expr):
        return _keep_nan(expr, vector_isnan)

    return tvm_ffi.structural_map(func, [(tirx.Max, keep), (tirx.Min, keep)])


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="mcc.PropagateNaN")
def PropagateNaN(func, _mod, _ctx):  # noqa: N802 (a pass, named like TVM's)
    return propagate_nan_func(func)


def _pipeline():
    from tvm.tirx import compilation_pipeline

    from mcc.build.bf16_convert import Bf16Convert
    from mcc.build.stack_tiles import TilesOnStack
    from mcc.build.vector_round import VectorRound

    inner, finalize_host, finalize_device = compilation_pipeline.get_tir_pipeline("s_tir")
    # after the lowering: a rewritten max / min in a block would no longer be recognised as
    # a reducer (CUDA's cross-thread reductions need that), and what comes out is flat loops;
    # the bf16 roundings are vector expressions only after vectorization; the register
    # tiles' allocations are marked before the host finalization lowers them; the rounding
    # rewrite (VectorRound) must come before the lowering's vectorizer
    passes = [VectorRound, inner, PropagateNaN, Bf16Convert, TilesOnStack]
    return tvm.transform.Sequential(passes, name="mcc"), finalize_host, finalize_device


def register() -> str:
    """Register the ``mcc`` TIR pipeline (idempotent); returns its name."""
    from tvm.tirx import compilation_pipeline

    compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline)
    return PIPELINE
