"""Default schedule rule for mcc's int8 kernels (mcc.passes.int8_kernels): VNNI on x86, sdot on ARM.

Per fused kernel holding a ``mcc_qconv`` block (the convolution plus whatever FuseOps
fused after it: dequantize, bias, ReLU, residual add, the next layer's quantize):

    loops      n, h, w/wi, oc/16/b, kh, kw, ic/4 | wi, b, 16, 4   (a register tile of wi
               pixels x b 16-channel blocks: b = 2 where output rows are <= 28 wide or
               divisible by 7, else 1)
    parallel   over n * h * (w / wi) * (oc / 16 / b)
    tensorize  the innermost 16 x 4 (16 output channels, 4 input channels): one
               ``vpdpbusd`` (u8 x s8, 64 multiply-adds) per step, where the target has
               AVX-512 VNNI; on aarch64 with the dot-product extension (ARMv8.2+
               ``+dotprod``: Cortex-A76, Neoverse-V1, ...) four ``sdot`` (s8 x s8, 4 x 4
               each, activations stored as int8: see ``activation_dtype``)
    epilogue   the elementwise tail is inlined into one block computed per 16 channels
               of wi pixels, while the int32 accumulators are still in cache

Without VNNI the same loop nest runs with the multiply-add vectorised by LLVM.

TVM's own VNNI intrinsic (``dot_16x4_vnni``) calls ``llvm.x86.avx512.vpdpbusd.512``
with ``<16 x i32>`` operands, which the LLVM in the TVM 0.27 wheel rejects (it wants
``<64 x i8>``); mcc registers the same description with byte-typed operands.
"""

from __future__ import annotations

import tvm
from tvm import tirx

from mcc.passes.int8_kernels import CONV_BLOCK, OC_BLOCK, PAD_BLOCK

VNNI_INTRIN = "mcc_dot_16x4_u8i8i32_vnni"
SDOT_INTRIN = "mcc_dot_4x4_i8i8i32_sdot"
_registered: set[str] = set()


def _register_dot(name: str, a_dtype: str, lanes: int, llvm_intrinsic: str) -> None:
    """A TensorIntrin for ``lanes`` int32 accumulators += 4-byte dot products of one
    ``a_dtype`` activation word with ``lanes`` int8 weight words: x86 VNNI ``vpdpbusd``
    (u8 x s8, 16 lanes) and ARM ``sdot`` (s8 x s8, 4 lanes), the descriptions of TVM's own
    ``dot_16x4_u8i8i32_vnni`` / ``dot_4x4_i8i8s32_sdot``. Registered here: importing
    tvm.s_tir.tensor_intrin parses every intrinsic TVM has (CUDA, Hexagon, ...), minutes
    of work on a busy machine."""
    if name in _registered:
        return
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            # one expression, no named temporaries: TVMScript would make each a local
            # allocation, which costs a workspace call per tile
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic),
                C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], f"{a_dtype}x4"),
                                                        dtype="int32"), lanes),
                              dtype=f"int8x{4 * lanes}"),
                B.vload([0, 0], dtype=f"int8x{4 * lanes}"),
                dtype=f"int32x{lanes}")

    TensorIntrin.register(name, desc, impl)
    _registered.add(name)


def _register_sdot() -> None:
    _register_dot(SDOT_INTRIN, "int8", 4, "llvm.aarch64.neon.sdot.v4i32.v16i8")


def _register_vnni() -> None:
    _register_dot(VNNI_INTRIN, "uint8", 16, "llvm.x86.avx512.vpdpbusd.512")


def has_vnni(target: tvm.target.Target) -> bool:
    if target.kind.name != "llvm":
        return False
    from tvm.target.codegen import target_has_features

    try:
        return bool(target_has_features("avx512vnni", target))
    except Exception:  # a target LLVM does not know: no VNNI assumed
        return False


DP4A_INTRIN = "mcc_dp4a_u8s8s32"
_registered_dp4a = False


def _register_dp4a() -> None:
    """CUDA ``__dp4a``: one int32 += 4 x (u8 . s8). TVM's own dp4a intrinsics want both
    operands in shared memory; mcc's kernels read them straight from global memory."""
    global _registered_dp4a
    if _registered_dp4a:
        return
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def dp4a_desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4,), "int8", offset_factor=1),
        C: T.Buffer((1,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:1], A[0:4], B[0:4])
            T.writes(C[0:1])
            for i in T.serial(0, 4):
                with T.sblock("update"):
                    vi = T.axis.remap("R", [i])
                    C[0] = C[0] + T.cast(A[vi], "int32") * T.cast(B[vi], "int32")

    @T.prim_func(s_tir=True)
    def dp4a_impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4,), "int8", offset_factor=1),
        C: T.Buffer((1,), "int32", offset_factor=1, scope="local"),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:1], A[0:4], B[0:4])
            T.writes(C[0:1])
            C[0] = C[0] + T.call_pure_extern("__dp4a", A.vload([0], "uint8x4"),
                                             B.vload([0], "int8x4"), T.int32(0),
                                             dtype="int32")

    TensorIntrin.register(DP4A_INTRIN, dp4a_desc, dp4a_impl)
    _registered_dp4a = True


def schedule_kernel_cuda(func: tirx.PrimFunc, threads: int = 128) -> tirx.PrimFunc:
    """CUDA: one thread per output value, its int32 accumulator in a register, the reduction
    over (kh, kw, ic / 4) one ``__dp4a`` (4 u8 x s8 products) per step, the fused epilogue
    computed by the same thread; the pad copy, where there is one, is a kernel of its own.
    Checked at code-generation level only (no GPU has run it yet)."""
    from tvm import s_tir

    _register_dp4a()
    sch = s_tir.Schedule(func)
    conv = _find_block(sch, CONV_BLOCK)
    pad = _find_block(sch, PAD_BLOCK)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get(block).name_hint.startswith((CONV_BLOCK, PAD_BLOCK)):
            try:
                sch.compute_inline(block)
            except Exception:  # noqa: S110  an output block: computed at the thread below
                pass
    n, h, w, o, kh, kw, ic = sch.get_loops(conv)
    ico, ici = sch.split(ic, [None, 4])
    # threads: 16 output channels (one packed weight block) x up to 8 pixels of a row;
    # split, not fused, so the packed-weight indices stay affine for tensorize
    wo, wi = sch.split(w, [None, _width_factor(int(sch.get(w).extent))])
    oo, oi = sch.split(o, [None, OC_BLOCK])
    sch.reorder(n, h, wo, oo, wi, oi, kh, kw, ico, ici)
    sch.bind(sch.fuse(n, h, wo, oo), "blockIdx.x")
    sch.bind(wi, "threadIdx.y")
    sch.bind(oi, "threadIdx.x")
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if not sch.get(block).name_hint.startswith((CONV_BLOCK, PAD_BLOCK)):
            sch.reverse_compute_at(block, oi)  # the epilogue, by the same thread
    sch.set_scope(conv, 0, "local")  # each thread's accumulator: a register
    sch.decompose_reduction(conv, kh)
    sch.tensorize(ici, DP4A_INTRIN)
    if pad is not None:
        pbx, ptx = sch.split(sch.fuse(*sch.get_loops(pad)), [None, threads])
        sch.bind(pbx, "blockIdx.x")
        sch.bind(ptx, "threadIdx.x")
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def has_dotprod(target: tvm.target.Target) -> bool:
    """aarch64 with the ARMv8.2 dot-product instructions (``sdot`` / ``udot``)."""
    if target.kind.name != "llvm" or "aarch64" not in str(target.attrs.get("mtriple", "")):
        return False
    from tvm.target.codegen import target_has_features

    try:
        return bool(target_has_features("dotprod", target))
    except Exception:  # a CPU LLVM does not know: no dot product assumed
        return False


def activation_dtype(target: tvm.target.Target) -> str:
    """How int8 activations are stored for ``target``: ``uint8`` (x86 VNNI multiplies u8 x s8,
    and the generic schedule takes either) or ``int8`` where only s8 x s8 exists (ARM sdot)."""
    return "int8" if has_dotprod(target) else "uint8"


def _int8_funcs(mod):
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if func.attrs is not None and bool(func.attrs.get("tirx.is_scheduled", False)):
            continue
        if CONV_BLOCK in func.script():
            yield gv, func


def _find_block(sch, prefix):
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint.startswith(prefix):
            return block
    return None


def _width_factor(extent: int) -> int:
    return max(d for d in range(1, 9) if extent % d == 0)


def _vectorize_below(sch, block, anchor) -> None:
    """Vectorise ``block``'s innermost loop if it lies below the loop ``anchor``."""
    loops = sch.get_loops(block)
    anchor_stmt = sch.get(anchor)
    depth = next((i for i, loop in enumerate(loops) if sch.get(loop).same_as(anchor_stmt)), None)
    if depth is not None and len(loops) > depth + 1:
        sch.vectorize(loops[-1])


def schedule_kernel(func: tirx.PrimFunc, vnni: bool, dotprod: bool = False,
                    fuse_epilogue: bool = True) -> tirx.PrimFunc:
    """The scheduled form of one fused int8 kernel (see the module docstring); ``dotprod``:
    ARM sdot (the kernel's activations must be int8). ``fuse_epilogue=False`` (the
    driver's fallback when a build fails, as for the fp32 rules) leaves the elementwise
    tail as separate loops after the conv."""
    from tvm import s_tir

    if vnni:
        _register_vnni()
    if dotprod:
        _register_sdot()
    sch = s_tir.Schedule(func)
    conv = _find_block(sch, CONV_BLOCK)
    pad = _find_block(sch, PAD_BLOCK)
    # the elementwise tail: inline all but the output blocks into their consumers
    for block in sch.get_child_blocks(sch.get_sblock("root")) if fuse_epilogue else []:
        name = sch.get(block).name_hint
        if name.startswith((CONV_BLOCK, PAD_BLOCK)):
            continue
        try:
            sch.compute_inline(block)
        except Exception:  # noqa: S110  an output block (or not inlinable): stays
            pass
    n, h, w, o, kh, kw, ic = sch.get_loops(conv)
    oc = int(sch.get(o).extent)
    ow = int(sch.get(w).extent)
    tensorize = (vnni or dotprod) and oc % OC_BLOCK == 0  # whole blocks (int8_kernels pads OC)
    # the register tile: wi pixels x blocks 16-channel blocks. Two blocks (each broadcast
    # input feeds two dot products) with at most 8 pixels where rows are <= 28 wide, 7 pixels
    # (14 accumulators) on wider rows that 7 divides; one block of up to 8 pixels otherwise.
    # ResNet-50's 1x1 convolutions at 28x28 and below: ~375 -> ~445 GOP/s; 56x56: +3-6%
    blocks = 2 if (tensorize and vnni and (oc // OC_BLOCK) % 2 == 0
                   and (ow <= 28 or ow % 7 == 0)) else 1
    wo, wi = sch.split(w, [None, 7 if blocks == 2 and ow > 28 else _width_factor(ow)])
    if tensorize:
        oo, ob, oi = sch.split(o, [None, blocks, OC_BLOCK])
        ico, ici = sch.split(ic, [None, 4])
        sch.reorder(n, h, wo, oo, kh, kw, ico, wi, ob, oi, ici)
    else:
        oo, oi = o, None
        sch.reorder(n, h, wo, oo, kh, kw, ic, wi)
    # the 16-channel blocks too: a 7x7 layer or a batch-1 dense has too few rows to keep
    # every core busy
    outer = sch.fuse(n, h, wo, oo) if tensorize else sch.fuse(n, h, wo)
    sch.parallel(outer)
    if tensorize:
        oo = outer
    for block in sch.get_child_blocks(sch.get_sblock("root")) if fuse_epilogue else []:
        name = sch.get(block).name_hint
        if name.startswith((CONV_BLOCK, PAD_BLOCK)):
            continue
        try:
            sch.reverse_compute_at(block, oo)
            _vectorize_below(sch, block, oo)
        except Exception:  # noqa: S110  not computable there: runs after the conv
            pass
    init = sch.decompose_reduction(conv, kh)
    _vectorize_below(sch, init, oo)
    if tensorize and vnni:
        sch.tensorize(oi, VNNI_INTRIN)
        if blocks > 1:  # the register tile: unrolled, so LLVM keeps it in registers
            sch.unroll(ob)
            sch.unroll(wi)
    elif tensorize:  # sdot: 4 output channels x 4 input channels per instruction
        sch.tensorize(sch.split(oi, [None, 4])[1], SDOT_INTRIN)
    if pad is not None:
        loops = sch.get_loops(pad)
        sch.parallel(sch.fuse(loops[0], loops[1]))
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def schedule_int8(mod: tvm.IRModule, target: tvm.target.Target,
                  fuse_epilogues: bool = True) -> tvm.IRModule:
    """Schedule every int8 kernel in ``mod``; other PrimFuncs are left alone.
    ``fuse_epilogues=False``: see ``schedule_kernel``."""
    if target.kind.name == "cuda":  # dp4a (sm_61 and later: every cuda preset)
        for gv, func in list(_int8_funcs(mod)):
            try:
                mod[gv] = schedule_kernel_cuda(func)
            except Exception:  # noqa: S110  left to the default GPU rules
                pass
        return mod
    vnni, dotprod = has_vnni(target), has_dotprod(target)
    for gv, func in list(_int8_funcs(mod)):
        try:
            scheduled = schedule_kernel(func, vnni, dotprod, fuse_epilogues)
        except Exception:  # noqa: S110  a fused shape the rule cannot handle stays naive
            try:
                scheduled = schedule_kernel(func, False, fuse_epilogue=fuse_epilogues)
            except Exception:
                continue
        mod[gv] = scheduled
    return mod
