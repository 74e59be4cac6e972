"""The two instruction sets mcc's bf16 kernels are tensorized with, as data.

Both do one step of the kernel's innermost 16 x 2 (16 output channels, a pair of input
channels): ``C[16] += A[2] . B[16, 2]`` in bf16 x bf16 -> fp32.

    x86   AVX-512 BF16  one ``vdpbf16ps`` zmm: 16 fp32 lanes, each += a 2-element dot
    arm   ARMv8.6 BF16  four NEON ``bfdot v.4s, v.8h, v.8h``: 4 fp32 lanes each, the
                        activation pair broadcast to every lane (a ``ld1r .4s``)

TVM 0.27 cannot pass a ``bfloat16`` vector to an LLVM intrinsic (its legalizer turns
every bf16 value into fp32), so each step is a tiny LLVM IR function (``ll_code``,
linked with ``pragma_import_llvm``, always inlined) taking ``<16 x i32>`` operands,
bitcasting them to bfloat vectors and calling the intrinsic. The function's
``target-features`` must be a subset of the target's for LLVM to inline it: ``has_isa``
checks the same feature on the target.

A register tile is ``wi`` pixels x ``ob`` 16-channel blocks of fp32 accumulators; one
block is one zmm on x86 and four q registers on ARM, which is why the tiles differ
(``tile``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bf16Isa:
    name: str
    feature: str  # the LLVM target feature the instruction needs
    func: str  # the LLVM IR function the tensor intrinsic calls
    ll_code: str
    tile: Callable[[int, int], tuple[int, int]]  # (output width, 16-ch blocks) -> (wi, ob)

    @property
    def intrin(self) -> str:
        return f"mcc_dot_16x2_bf16_f32_local_{self.name}"


def _x86_tile(ow: int, oc_blocks: int) -> tuple[int, int]:
    """Measured on Zen 4 (one thread, ResNet-50 shapes): 14 x 2 is best or within 3%
    everywhere (180-217 GFLOP/s), 7 x 4 (28 accumulators) is 1.4-3.2x slower; so 14
    pixels where 14 divides the row, else 7, else up to 8 (dense rows); 2 blocks, 4 where
    a row gives under 4 pixels.

    An odd number of blocks (144 channels: 9) took 1 block a tile: one weight vector and
    14 activation broadcasts per 14 ``vdpbf16ps``. 3 (or 5) blocks and at most 24
    accumulators load half as much per instruction: MobileNetV2's 56x56 expand 1x1
    (24 -> 144 channels) 199 -> 148 us on one Zen 5 thread (8 x 3 pixels x blocks)."""
    if oc_blocks % 2 and oc_blocks > 1:
        ob = next((b for b in (3, 5) if oc_blocks % b == 0), 0)
        if ob:
            return max(d for d in range(1, ODD_ACCUMULATORS // ob + 1) if ow % d == 0), ob
    if ow % 14 == 0:
        wi = 14
    elif ow % 7 == 0:
        wi = 7
    else:
        wi = max(d for d in range(1, 9) if ow % d == 0)
    ob = 2 if oc_blocks % 2 == 0 else 1
    if wi < 4 and oc_blocks % 4 == 0:
        ob = 4  # a batch-1 dense layer or a tiny map: more channels per tile instead
    return wi, ob


ODD_ACCUMULATORS = 24  # of 32 zmm: the weight vectors of a step and a broadcast take the rest


NEON_ACCUMULATORS = 24  # of 32 q registers: 4 weight vectors + activations take the rest


def _neon_tile(ow: int, oc_blocks: int) -> tuple[int, int]:
    """A 16-channel block is 4 q accumulators, so at most 6 pixel-blocks per tile
    (24 registers; the 4 weight vectors of a step and the broadcast activations fit in
    the other 8, so the tile never spills: tests/arm/test_bf16_neon.py checks the inner loop).
    Not timed: no BF16 ARM machine was at hand, qemu gives no speed."""
    wi = max(d for d in range(1, 7) if ow % d == 0)
    ob = max(b for b in (1, 2, 4, 6) if oc_blocks % b == 0 and 4 * wi * b <= NEON_ACCUMULATORS)
    return wi, ob


X86 = Bf16Isa("x86", "avx512bf16", "mcc_dpbf16ps_512", """
define linkonce_odr <16 x float> @mcc_dpbf16ps_512(<16 x float> %c, <16 x i32> %a, <16 x i32> %b) #0 {
  %a2 = bitcast <16 x i32> %a to <32 x bfloat>
  %b2 = bitcast <16 x i32> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %c, <32 x bfloat> %a2, <32 x bfloat> %b2)
  ret <16 x float> %r
}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
attributes #0 = { alwaysinline nounwind readnone "target-features"="+avx512bf16,+avx512f,+avx512bw,+avx512vl" }
""", _x86_tile)  # noqa: E501


def _neon_ll() -> str:
    """Four bfdot on the four 128-bit quarters of the <16 x i32> operands, concatenated."""
    lines = ["define linkonce_odr <16 x float> @mcc_bfdot_16x2(<16 x float> %c, "
             "<16 x i32> %a, <16 x i32> %b) #0 {"]
    for q in range(4):
        lanes = ", ".join(f"i32 {4 * q + i}" for i in range(4))
        lines += [
            f"  %c{q} = shufflevector <16 x float> %c, <16 x float> poison, <4 x i32> <{lanes}>",
            f"  %a{q} = shufflevector <16 x i32> %a, <16 x i32> poison, <4 x i32> <{lanes}>",
            f"  %b{q} = shufflevector <16 x i32> %b, <16 x i32> poison, <4 x i32> <{lanes}>",
            f"  %ah{q} = bitcast <4 x i32> %a{q} to <8 x bfloat>",
            f"  %bh{q} = bitcast <4 x i32> %b{q} to <8 x bfloat>",
            f"  %r{q} = call <4 x float> @llvm.aarch64.neon.bfdot.v4f32.v8bf16("
            f"<4 x float> %c{q}, <8 x bfloat> %ah{q}, <8 x bfloat> %bh{q})"]
    eight = ", ".join(f"i32 {i}" for i in range(8))
    sixteen = ", ".join(f"i32 {i}" for i in range(16))
    lines += [
        f"  %lo = shufflevector <4 x float> %r0, <4 x float> %r1, <8 x i32> <{eight}>",
        f"  %hi = shufflevector <4 x float> %r2, <4 x float> %r3, <8 x i32> <{eight}>",
        f"  %r = shufflevector <8 x float> %lo, <8 x float> %hi, <16 x i32> <{sixteen}>",
        "  ret <16 x float> %r", "}",
        "declare <4 x float> @llvm.aarch64.neon.bfdot.v4f32.v8bf16(<4 x float>, <8 x bfloat>, "
        "<8 x bfloat>)",
        'attributes #0 = { alwaysinline nounwind readnone "target-features"="+neon,+bf16" }']
    return "\n".join(lines) + "\n"


NEON = Bf16Isa("arm", "bf16", "mcc_bfdot_16x2", _neon_ll(), _neon_tile)


def _has(feature: str, target) -> bool:
    from tvm.target.codegen import target_has_features

    try:
        return bool(target_has_features(feature, target))
    except Exception:  # a CPU LLVM does not know: no bf16 assumed
        return False


def bf16_isa(target) -> Bf16Isa | None:
    """The bf16 instruction set of an ``llvm`` target: x86 with AVX-512 BF16 (Zen 4/5,
    Cooper Lake, Sapphire Rapids), aarch64 with BF16 (``+bf16``: Neoverse V1/V2/N2,
    Graviton3/4, Apple M2+); None elsewhere."""
    if target.kind.name != "llvm":
        return None
    from mcc.targets.cpu_info import is_aarch64

    isa = NEON if is_aarch64(target) else X86
    return isa if _has(isa.feature, target) else None
