"""bf16 as uint16 bit patterns, in numpy and in TIR: the conversions every bf16 kernel and its
tests share (TVM 0.27 legalizes ``bfloat16`` to fp32, so mcc never uses that dtype in TIR).
"""

from __future__ import annotations

import numpy as np


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, np.uint16(0x7FC0), rounded).astype(np.uint16)


def bf16_round(x: np.ndarray) -> np.ndarray:
    """fp32 rounded to bf16 and back (the numerics reference)."""
    return (to_bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def bf16_to_f32(x):
    """Exact bf16 (uint16 bits) -> fp32, in TIR."""
    from tvm import tirx

    return tirx.reinterpret("float32", x.astype("uint32") << tirx.const(16, "uint32"))


def f32_to_bf16(x):
    """fp32 -> bf16 bits, round to nearest even, in TIR (NaN payloads may round to inf)."""
    from tvm import tirx

    u = tirx.reinterpret("uint32", x)
    one, sixteen = tirx.const(1, "uint32"), tirx.const(16, "uint32")
    return ((u + tirx.const(0x7FFF, "uint32") + ((u >> sixteen) & one)) >> sixteen
            ).astype("uint16")
