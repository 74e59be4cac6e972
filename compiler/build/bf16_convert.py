"""fp32 -> bf16 roundings as one ``vcvtneps2bf16`` each, rewritten in the lowered TIR.

mcc's bf16 kernels store bf16 as uint16 bits and round fp32 to them with integer
arithmetic (``mcc.passes.bf16_bits.f32_to_bf16``: ``(u + 0x7FFF + ((u >> 16) & 1)) >> 16``),
since TVM 0.27 legalizes the ``bfloat16`` dtype away and its vectorizer scalarizes an
extern call. On a 16-lane vector that is six integer instructions and a narrowing move;
every bf16 handoff's producer ends its epilogue with one per output vector, which in a
convolution with few input channels (MobileNetV2's expand and project 1x1s, K = 16..32)
costs about as much as its ``vdpbf16ps``. AVX-512 BF16 rounds 16 lanes in one
instruction, to nearest even as the formula does (and keeps a NaN a NaN, which the
formula does not always); it flushes fp32 denormals (below 1.2e-38) to zero, where the
formula rounds them to bf16 denormals.

So at the end of the TIR pipeline (after vectorization, where the pattern is a vector
expression) each ``uint16`` cast of that exact formula over ``reinterpret(uint32, x)``
(x a float32 vector of 16 or 8 lanes; the operand may have been bound to a variable by
common-subexpression elimination) becomes a call of a small LLVM function doing
``fptrunc <N x float> to <N x bfloat>``, which LLVM compiles to ``vcvtneps2bf16`` on a
target with ``avx512bf16``; the function is linked in with ``pragma_import_llvm``, as
the bf16 dot products are. Other targets and lane counts keep the integer form.
"""

from __future__ import annotations

from collections import Counter

import tvm
import tvm_ffi
from tvm import tirx
from tvm.ir.prim.expr import BitwiseAnd, RShift

LANES = (16, 8)  # zmm and ymm forms of vcvtneps2bf16


def _func_name(lanes: int) -> str:
    return f"mcc_cvt_f32_bf16_x{lanes}"


def _ll_code() -> str:
    defs = []
    for n in LANES:
        defs.append(
            f"define linkonce_odr <{n} x i16> @{_func_name(n)}(<{n} x float> %x) #0 {{\n"
            f"  %b = fptrunc <{n} x float> %x to <{n} x bfloat>\n"
            f"  %r = bitcast <{n} x bfloat> %b to <{n} x i16>\n"
            f"  ret <{n} x i16> %r\n}}\n")
    return "".join(defs) + ('attributes #0 = { alwaysinline nounwind readnone "target-features"='
                            '"+avx512bf16,+avx512f,+avx512bw,+avx512vl" }\n')


LL_CODE = _ll_code()

# the formula's constants: 0x7FFF added, 16 shifted (twice), 1 masked
_CONSTANTS = Counter({0x7FFF: 1, 16: 2, 1: 1})


def _op(expr) -> str | None:
    if isinstance(expr, tvm.ir.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _constant(expr) -> int | None:
    if isinstance(expr, tirx.Broadcast):
        expr = expr.value
    return int(expr.value) if isinstance(expr, tirx.IntImm) else None


def _rounded_operand(expr, lets: dict):
    """The float32 vector whose bf16 rounding ``expr`` (the uint16 cast's operand) is,
    or None where it is anything else."""
    constants, sources = Counter(), []
    shape = Counter()  # the formula's operations: 2 adds, 2 right shifts, 1 and

    def walk(e) -> bool:
        if isinstance(e, (tirx.Add, RShift, BitwiseAnd)):
            shape[type(e).__name__] += 1
            return walk(e.a) and walk(e.b)
        value = _constant(e)
        if value is not None:
            constants[value] += 1
            return True
        if isinstance(e, tirx.Var) and e in lets:
            e = lets[e]
        if _op(e) == "tirx.reinterpret" and e.args[0].ty.dtype.type_code == 2:  # a float
            sources.append(e.args[0])
            return True
        return False

    if not walk(expr) or constants != _CONSTANTS or len(sources) != 2:
        return None
    if shape != Counter({"Add": 2, "RShift": 2, "BitwiseAnd": 1}):
        return None
    x, other = sources
    if not x.same_as(other) and not tvm_ffi.structural_equal(x, other):
        return None
    # the grouping: ((u + 0x7FFF + ((u >> 16) & 1)) >> 16); the outer node is the shift
    if not isinstance(expr, RShift) or _constant(expr.b) != 16:
        return None
    dtype = x.ty.dtype
    return x if dtype.bits == 32 and dtype.lanes in LANES else None


def convert_bf16_roundings(func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, int]:
    """``func`` with each vector bf16 rounding a ``vcvtneps2bf16`` call, and how many."""
    lets = {}

    def bind(stmt):  # CSE's ``cse_v = ...`` bindings (vars are bound once)
        lets[stmt.var] = stmt.value

    tvm_ffi.structural_walk(func.body, ((tirx.LetStmt, tirx.Bind), bind), order="post")
    count = 0

    def rewrite(cast):
        nonlocal count
        dtype = cast.ty.dtype
        if dtype.bits != 16 or dtype.type_code != 1 or dtype.lanes not in LANES:  # uint16 vectors
            return cast
        x = _rounded_operand(cast.value, lets)
        if x is None:
            return cast
        count += 1
        return tirx.call_pure_extern(f"uint16x{dtype.lanes}", _func_name(dtype.lanes), x)

    body = tvm_ffi.structural_map(func.body, [(tirx.Cast, rewrite)])
    if not count:
        return func, 0
    body = tirx.AttrStmt(tvm.ir.StringImm("mcc_bf16_convert"), "pragma_import_llvm",
                         tvm.ir.StringImm(LL_CODE), body)
    return func.with_body(body), count


def _has_avx512bf16(func) -> bool:
    target = func.attrs.get("target") if func.attrs is not None else None
    if target is None:
        return False
    from mcc.schedule.rules.bf16_isa import X86, bf16_isa

    return bf16_isa(target) is X86


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="mcc.Bf16Convert")
def Bf16Convert(func, _mod, _ctx):  # noqa: N802 (a pass, named like TVM's)
    if not _has_avx512bf16(func):
        return func
    return convert_bf16_roundings(func)[0]
