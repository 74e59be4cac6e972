"""Default schedule rule for mcc's bf16 kernels (mcc.passes.bf16): x86 ``vdpbf16ps``, ARM ``bfdot``.

Per fused kernel holding a ``mcc_bconv`` block (the convolution, its output block and
whatever FuseOps fused after it: bias, ReLU, residual add):

    loops      n, h, w/wi, oc/(16 ob) | kh, kw, ic/2 | wi, ob, [16 x 2]: a register tile
               of wi pixels (rows, for a dense layer) x ob 16-channel blocks, the fp32
               accumulators in a ``local`` buffer that LLVM keeps in registers
    parallel   over n * h * (w / wi) * (oc / 16 / ob)
    tensorize  the innermost 16 x 2 (16 output channels, 2 input channels): one AVX-512
               BF16 ``vdpbf16ps`` (x86) or four NEON ``bfdot`` (aarch64 +bf16): 32 bf16
               multiply-adds into 16 fp32 lanes (``mcc.schedule.rules.bf16_isa``)
    epilogue   the elementwise tail inlined into one block computed per tile
    pad        the pad + fp32 -> bf16 cast block: parallel, vectorised

Depthwise kernels (``mcc_bdwconv``, mcc.passes.bf16_depthwise): ``schedule_depthwise``,
fp32 multiply-adds on 16-channel vectors, no intrinsic.

Only targets with one of those instruction sets get this rule; ``--precision bf16`` is
refused elsewhere (``check_bf16_target``).
"""

from __future__ import annotations

import functools

import tvm
from tvm import tirx

from mcc.errors import MccError
from mcc.passes.bf16 import CONV_BLOCK, IC_BLOCK, OC_BLOCK, PAD_BLOCK
from mcc.passes.bf16_depthwise import DW_BLOCK, DW_PAD_BLOCK, LANES
from mcc.schedule.rules.bf16_isa import X86, Bf16Isa, bf16_isa

_registered: set[str] = set()


def _register(isa: Bf16Isa) -> None:
    if isa.intrin in _registered:
        return
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((2,), "uint16", offset_factor=1),
        B: T.Buffer((16, 2), "uint16", offset_factor=1),
        C: T.Buffer((16,), "float32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.reinterpret(
                            "float32", T.Cast("uint32", A[vk]) << T.uint32(16)) * T.reinterpret(
                            "float32", T.Cast("uint32", B[vi, vk]) << T.uint32(16))

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((2,), "uint16", offset_factor=1),
        B: T.Buffer((16, 2), "uint16", offset_factor=1),
        C: T.Buffer((16,), "float32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            C[T.ramp(T.int32(0), 1, 16)] = T.call_pure_extern(
                "float32x16", isa.func,
                C.vload([0], dtype="float32x16"),
                T.broadcast(T.reinterpret(A.vload([0], "uint16x2"), dtype="int32"), 16),
                T.reinterpret(B.vload([0, 0], dtype="uint16x32"), dtype="int32x16"))

    TensorIntrin.register(isa.intrin, desc, impl)
    _registered.add(isa.intrin)


def has_bf16(target: tvm.target.Target) -> bool:
    """Whether ``target`` has bf16 dot products mcc's kernels use (``bf16_isa``)."""
    return bf16_isa(target) is not None


def check_bf16_target(target: tvm.target.Target, name: str) -> None:
    """``--precision bf16`` needs AVX-512 BF16 (x86) or BF16 (aarch64): a one-line MccError
    elsewhere, naming the target and what to use instead."""
    if has_bf16(target):
        return
    cpu = target.attrs.get("mcpu", "") if target.kind.name == "llvm" else ""
    where = f"{name} ({cpu})" if cpu else name
    if "aarch64" in str(target.attrs.get("mtriple", "")):
        from mcc.targets.cpu_info import has_fp16_arithmetic

        instead = "--precision fp16" if has_fp16_arithmetic(target) else "fp32 or int8"
        raise MccError(f"--precision bf16: target {where} lacks the ARM bf16 feature (BFDOT: "
                       f"ARMv8.6-A, Neoverse V1/N2, Graviton3); use {instead}")
    raise MccError(f"--precision bf16: target {where} lacks the avx512bf16 feature "
                   "(AVX-512 BF16: Zen 4+, Cooper Lake, Sapphire Rapids); use fp32")


COSINE_MIN = 0.999  # verification of a bf16 module: per-output cosine vs the fp32 reference


def _inline_others(sch, own: tuple[str, ...]) -> None:
    """Inline every block but the kernel's ``own`` (the elementwise tail and any injective
    prologue) where it can be; an output block stays, computed per tile by the caller."""
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint.startswith(own):
            continue
        try:
            sch.compute_inline(block)
        except Exception:  # noqa: S110, BLE001  an output block
            pass


def _find_block(sch, prefix):
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint.startswith(prefix):
            return block
    return None


def schedule_kernel(func: tirx.PrimFunc, fuse: bool = True, isa: Bf16Isa = X86
                    ) -> tirx.PrimFunc:
    """The scheduled form of one fused bf16 kernel, tensorized with ``isa``. ``fuse=False``
    (the fallback where the epilogue cannot be computed per tile): the tile is written
    back to memory and the epilogue runs as separate parallel loops."""
    from tvm import s_tir

    _register(isa)
    sch = s_tir.Schedule(func)
    conv = _find_block(sch, CONV_BLOCK)
    pad = _find_block(sch, PAD_BLOCK)
    if fuse:
        _inline_others(sch, (CONV_BLOCK, PAD_BLOCK))
    n, h, w, o, kh, kw, ic = sch.get_loops(conv)
    ow, oc = int(sch.get(w).extent), int(sch.get(o).extent)
    wi, ob = isa.tile(ow, oc // OC_BLOCK)
    wo, wii = sch.split(w, [None, wi])
    oo, obb, oi = sch.split(o, [None, ob, OC_BLOCK])
    ico, ici = sch.split(ic, [None, IC_BLOCK])
    sch.reorder(n, h, wo, oo, kh, kw, ico, wii, obb, oi, ici)
    outer = sch.fuse(n, h, wo, oo)
    sch.parallel(outer)
    rest = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
            if not sch.get(b).name_hint.startswith((CONV_BLOCK, PAD_BLOCK))]
    if fuse:
        sch.set_scope(conv, 0, "local")  # the accumulators: one tile, in registers
    else:  # the tile in registers, written back per tile; the epilogue on its own
        for block in rest:
            loops = sch.get_loops(block)
            sch.parallel(sch.fuse(*loops[:2]) if len(loops) > 1 else loops[0])
        rest = [sch.cache_write(conv, 0, "local")]
        rest = [sch.get_sblock(sch.get(rest[0]).name_hint)]
    for block in rest:
        sch.reverse_compute_at(block, outer)
        loops = sch.get_loops(block)
        if len(loops) > 1:
            sch.vectorize(loops[-1])
    init = sch.decompose_reduction(conv, kh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(oi, isa.intrin)
    sch.annotate(outer, "pragma_import_llvm", isa.ll_code)
    sch.unroll(obb)
    sch.unroll(wii)
    if pad is not None:
        loops = sch.get_loops(pad)
        sch.parallel(sch.fuse(loops[0], loops[1]))
        c = int(sch.get(loops[-1]).extent)
        if c % 16 == 0:
            sch.vectorize(sch.split(loops[-1], [None, 16])[1])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _bf16_funcs(mod, isa: Bf16Isa):
    """(gv, func, rule(func, fuse)) of each unscheduled bf16 kernel."""
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and bool(func.attrs.get("tirx.is_scheduled", False)):
            continue
        script = func.script()
        if f'"{CONV_BLOCK}' in script:
            yield gv, func, functools.partial(schedule_kernel, isa=isa)
        elif f'"{DW_BLOCK}' in script:
            yield gv, func, schedule_depthwise


def schedule_bf16(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Schedule every bf16 kernel in ``mod`` (targets with a ``bf16_isa`` only; elsewhere
    the kernels are left to the default rules: correct, slow; the CLI refuses such
    targets)."""
    isa = bf16_isa(target)
    if isa is None:
        return mod
    for gv, func, rule in list(_bf16_funcs(mod, isa)):
        for fuse in (True, False):
            try:
                mod[gv] = rule(func, fuse)
                break
            except Exception:  # noqa: S112, BLE001  unfused next, then the default rules
                continue
    return mod


def _dw_tile(ow: int) -> int:
    """Output pixels per register tile of a depthwise conv: a divisor of the row, <= 8."""
    return max(d for d in range(1, 9) if ow % d == 0)


def schedule_depthwise(func: tirx.PrimFunc, fuse: bool = True) -> tirx.PrimFunc:
    """mcc's bf16-input depthwise conv (mcc.passes.bf16_depthwise): per output row
    (parallel) and 16-channel vector, tiles of up to 8 pixels accumulated in zmm registers
    with every tap unrolled, the epilogue applied per tile.

    A bf16 input (a handoff) is read in place, the zero padding a select on each load:
    with the taps unrolled LLVM loads each input vector once for all the taps and pixels
    of a tile that read it (10 loads, not 24, for 8 pixels of a 3x3 stride-1 row), where
    a padded copy of the rows cost a copy per output row and a load per tap (MobileNetV2's
    depthwise convs 1.3-1.7x faster on one Zen 5 thread); the channel vector is the outer
    tile loop, so its taps' weights stay in registers along the row, and the epilogue's
    pixel loop is unrolled, so the accumulators never leave registers (a further 1.1-1.7x:
    the tile was written to a workspace and read back). An fp32 input keeps
    the old form, padded and rounded once per output row (its rounding is the expensive
    part; the bf16 form measured 1.7x slower on it)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    conv = _find_block(sch, DW_BLOCK)
    pad = _find_block(sch, DW_PAD_BLOCK)
    bf16_input = all(r.source.dtype == "uint16" for r in sch.get(pad).reads)
    if fuse:
        _inline_others(sch, (DW_BLOCK, DW_PAD_BLOCK))
    n, h, w, c, kh, kw = sch.get_loops(conv)
    wo, wi = sch.split(w, [None, _dw_tile(int(sch.get(w).extent))])
    co, ci = sch.split(c, [None, LANES])
    tile = wo if bf16_input else co
    sch.reorder(n, h, *((co, wo) if bf16_input else (wo, co)), kh, kw, wi, ci)
    outer = sch.fuse(n, h)
    sch.parallel(outer)
    rest = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
            if not sch.get(b).name_hint.startswith((DW_BLOCK, DW_PAD_BLOCK))]
    if fuse:
        sch.set_scope(conv, 0, "local")
    else:
        for block in rest:
            loops = sch.get_loops(block)
            sch.parallel(sch.fuse(*loops[:2]) if len(loops) > 1 else loops[0])
        rest = [sch.cache_write(conv, 0, "local")]
        rest = [sch.get_sblock(sch.get(rest[0]).name_hint)]
    for block in rest:
        sch.reverse_compute_at(block, tile)
        loops = sch.get_loops(block)
        sch.vectorize(loops[-1])
        if fuse:  # constant indices into the tile: LLVM keeps the accumulators in registers
            sch.unroll(loops[-2])
    sch.vectorize(ci)
    sch.unroll(wi)
    if bf16_input:
        sch.unroll(kw)
        sch.unroll(kh)
    init = sch.decompose_reduction(conv, kh)
    init_loops = sch.get_loops(init)
    if sch.get(init_loops[-1]).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(init_loops[-1])
    if bf16_input:
        sch.compute_inline(pad)
    else:
        sch.compute_at(pad, outer)
        loops = sch.get_loops(pad)
        sch.vectorize(sch.split(loops[-1], [None, LANES])[1])
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)
