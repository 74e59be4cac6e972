"""Cast / CastLike to and from the four ONNX float8 types, bit-exact.

TVM's own float8 conversion saturates and rounds differently from ONNX (inf
where ONNX wants 448, truncation where ONNX rounds to nearest even), so casts
that touch float8 are emitted here as integer arithmetic on the bits:

- float8 -> wider: a 256-entry table indexed by the byte (exact by construction);
- wider -> float8: the float32 exponent and a round-half-to-even of the scaled
  magnitude give the code directly (subnormals and the carry into the next
  binade fall out of the same formula), then ONNX's ``saturate`` rule: clamp
  to the largest finite value, or overflow to inf (E5M2) / NaN (the others).

Every other Cast is TVM's converter, unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tvm import relax, te, tirx
from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter, get_type

from mcc.frontends.onnx_ops import register

# ONNX TensorProto element types.
FLOAT8_TYPES = {17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2",
                20: "float8_e5m2fnuz"}


@dataclass(frozen=True)
class Float8Format:
    dtype: str
    mbits: int  # stored mantissa bits
    bias: int
    max_code: int  # largest finite magnitude's code (sign bit clear)
    overflow_code: int  # what a non-saturating overflow becomes (inf or NaN)
    nan_code: int
    has_negative_zero: bool
    sign_bit: int = 7
    codes: int = 256


FORMATS = {
    "float8_e4m3fn": Float8Format("float8_e4m3fn", 3, 7, 0x7E, 0x7F, 0x7F, True),
    "float8_e4m3fnuz": Float8Format("float8_e4m3fnuz", 3, 8, 0x7F, 0x80, 0x80, False),
    "float8_e5m2": Float8Format("float8_e5m2", 2, 15, 0x7B, 0x7C, 0x7E, True),
    "float8_e5m2fnuz": Float8Format("float8_e5m2fnuz", 2, 16, 0x7F, 0x80, 0x80, False),
}
# FLOAT4E2M1: no inf or NaN (overflow saturates, NaN becomes -0 as in ml_dtypes); held
# as its 4-bit code in a uint8 (see mcc.frontends.subbyte).
FLOAT4 = Float8Format("float4_e2m1fn", 1, 1, 0x7, 0x7, 0x8, True, sign_bit=3, codes=16)


@functools.cache
def decode_table(dtype: str, codes: int = 256) -> np.ndarray:
    """float32 value of each code of a float8 (or float4) ``dtype``."""
    import ml_dtypes

    return np.arange(codes, dtype=np.uint8).view(getattr(ml_dtypes, dtype)).astype(np.float32)


def _pow2(k):
    """2**k as float32 for an int32 ``k`` in the normal range, built from its bits."""
    return tirx.reinterpret("float32", ((k + 127) << 23).astype("uint32"))


def encode_float8(x, fmt: Float8Format, saturate: bool):
    """TIR expression: the float8 code (uint8) of float32 ``x`` under ONNX's rules."""
    i32 = functools.partial(tirx.const, dtype="int32")
    bits = tirx.reinterpret("uint32", x)
    negative = (bits >> tirx.const(31, "uint32")) == tirx.const(1, "uint32")
    exponent = ((bits >> tirx.const(23, "uint32")) & tirx.const(0xFF, "uint32")).astype("int32")
    exponent = tirx.max(exponent - i32(127), i32(1 - fmt.bias))
    ulp = exponent - i32(fmt.mbits)
    magnitude = tirx.abs(x)
    steps = tirx.nearbyint(magnitude * _pow2(-ulp))  # round half to even
    finite = tirx.all(magnitude < tirx.const(float("inf"), "float32"))
    is_nan = tirx.isnan(x)
    safe_steps = tirx.Select(finite, steps, tirx.const(0.0, "float32")).astype("int32")
    code = ((exponent + i32(fmt.bias - 1)) << fmt.mbits) + safe_steps
    too_big = tirx.any(magnitude >= tirx.const(float("inf"), "float32"), is_nan,
                       code > i32(fmt.max_code))
    code = tirx.Select(too_big, i32(fmt.max_code if saturate else fmt.overflow_code), code)
    sign = i32(1 << fmt.sign_bit)
    if fmt.overflow_code != 0x80:  # the sign applies (not to fnuz's NaN code 0x80)
        signed = code | sign
    else:
        signed = tirx.Select(tirx.any(code == i32(0), code == i32(0x80)), code,
                             code | sign)
    if not fmt.has_negative_zero:
        signed = tirx.Select(code == i32(0), code, signed)
    code = tirx.Select(negative, signed, code)
    nan = i32(fmt.nan_code)
    if fmt.codes == 16:  # float4 has no NaN: ml_dtypes (ONNX's reference) gives +NaN -> -0
        nan = tirx.Select(negative, i32(0), nan)  # and -NaN -> +0
    code = tirx.Select(is_nan, nan, code)
    return code.astype("uint8")


def cast_to_float8(bb, data, dtype: str, saturate: bool):
    fmt = FORMATS[dtype]
    if str(data.ty.dtype) != "float32":
        data = bb.normalize(relax.op.astype(data, "float32"))

    def compute(x):
        return te.compute(x.shape, lambda *i: tirx.reinterpret(
            dtype, encode_float8(x(*i), fmt, saturate)), name="cast_to_" + dtype)

    return bb.emit_te(compute, data, primfunc_name_hint="cast_to_" + dtype)


def encode_e8m0(x, saturate: bool, round_mode: str):
    """TIR expression: the FLOAT8E8M0 code (a bare exponent) of float32 ``x``, as ONNX's
    reference (onnx.numpy_helper.to_float8e8m0) computes it."""
    u32 = functools.partial(tirx.const, dtype="uint32")
    bits = tirx.reinterpret("uint32", x)
    exponent = (bits >> u32(23)) & u32(0xFF)
    special = exponent == u32(0xFF)
    if round_mode == "nearest":
        guard = (bits & u32(0x400000)) > u32(0)
        rest = tirx.any((bits & u32(0x200000)) > u32(0), (bits & u32(0x1FFFFF)) > u32(0),
                        exponent > u32(0))
        round_up = tirx.all(guard, rest)
    elif round_mode == "up":
        round_up = (bits & u32(0x7FFFFF)) > u32(0)
    elif round_mode == "down":
        round_up = tirx.const(False, "bool")
    else:
        raise ValueError(f"Cast: unsupported round_mode '{round_mode}'")
    if saturate:
        round_up = tirx.all(round_up, exponent != u32(0xFE))
    code = exponent + tirx.Select(round_up, u32(1), u32(0))
    return tirx.Select(special, u32(0xFF), code).astype("uint8")


def cast_to_e8m0(bb, data, saturate: bool, round_mode: str):
    if str(data.ty.dtype) != "float32":
        data = bb.normalize(relax.op.astype(data, "float32"))

    def compute(x):
        return te.compute(x.shape, lambda *i: tirx.reinterpret(
            "float8_e8m0fnu", encode_e8m0(x(*i), saturate, round_mode)), name="cast_to_e8m0")

    return bb.emit_te(compute, data, primfunc_name_hint="cast_to_e8m0")


def cast_to_float4(bb, data):
    """Codes (uint8) of FLOAT4E2M1 values; ONNX always saturates this type."""
    if str(data.ty.dtype) != "float32":
        data = bb.normalize(relax.op.astype(data, "float32"))

    def compute(x):
        return te.compute(x.shape, lambda *i: encode_float8(x(*i), FLOAT4, True),
                          name="cast_to_float4_e2m1")

    return bb.emit_te(compute, data, primfunc_name_hint="cast_to_float4_e2m1")


def cast_from_float8(bb, data, to: str, fmt: Float8Format | None = None):
    fmt = fmt or FORMATS[str(data.ty.dtype)]
    table = relax.const(decode_table(fmt.dtype, fmt.codes))
    if fmt is FLOAT4:  # already codes in a uint8
        index = bb.normalize(relax.op.astype(data, "int32"))
    else:
        def codes(x):
            return te.compute(x.shape,
                              lambda *i: tirx.reinterpret("uint8", x(*i)).astype("int32"),
                              name="float8_codes")

        index = bb.emit_te(codes, data, primfunc_name_hint="float8_codes")
    value = bb.normalize(relax.op.take(table, index, axis=0))
    return value if to == "float32" else bb.normalize(relax.op.astype(value, to))


def _tvm_converter(op_type: str):
    from mcc.frontends.onnx_ops import _tvm_map

    return _tvm_map()[op_type]


def _dtype_of(value) -> str | None:
    ty = getattr(value, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def cast_to_narrow_int(bb, data, to: str):
    """ONNX's cast to int4/uint4/int2/uint2 (truncate, non-finite -> 0, wrap to the
    narrow range), held in int8/uint8 (see mcc.frontends.subbyte)."""
    from mcc.frontends.subbyte import NARROW_DTYPES

    signed, bits = NARROW_DTYPES[to]
    source = _dtype_of(data)
    if source.startswith(("float", "bfloat")):
        zero = relax.const(0, source) if source != "bfloat16" else relax.op.astype(
            relax.const(0, "float32"), "bfloat16")
        data = relax.op.where(relax.op.isfinite(data), data, zero)
    wide = bb.normalize(relax.op.astype(data, "int64"))
    mask = relax.const((1 << bits) - 1, "int64")
    if signed:
        half = relax.const(1 << (bits - 1), "int64")
        wide = relax.op.subtract(relax.op.bitwise_and(relax.op.add(wide, half), mask), half)
    else:
        wide = relax.op.bitwise_and(wide, mask)
    return bb.normalize(relax.op.astype(wide, "int8" if signed else "uint8"))


def _cast(bb, data, to: str, attr, fallback):
    from mcc.frontends.subbyte import NARROW_DTYPES

    source = _dtype_of(data)
    if attr.get("mcc_from") == 23:  # FLOAT4E2M1 codes (mcc.frontends.subbyte)
        return cast_from_float8(bb, bb.normalize(data), to, FLOAT4)
    if to == "float8_e8m0fnu" and source is not None:
        mode = attr.get("round_mode", b"up")
        return cast_to_e8m0(bb, bb.normalize(data), bool(attr.get("saturate", 1)),
                            mode.decode() if isinstance(mode, bytes) else str(mode))
    if to == "float4_e2m1fn" and source is not None:
        return cast_to_float4(bb, bb.normalize(data))
    if to in NARROW_DTYPES and source is not None:
        return cast_to_narrow_int(bb, bb.normalize(data), to)
    if to in FORMATS and source is not None:
        return cast_to_float8(bb, bb.normalize(data), to, bool(attr.get("saturate", 1)))
    if source in FORMATS:
        return cast_from_float8(bb, bb.normalize(data), to)
    return fallback()


@register("Cast")
class Cast(OnnxOpConverter):
    @classmethod
    def get_converter(cls, opset):
        tvm_impl = _tvm_converter("Cast").get_converter(opset)

        def convert(bb, inputs, attr, params):
            to = attr["to"]
            if isinstance(to, int):
                to = FLOAT8_TYPES.get(to) or get_type(to)
            return _cast(bb, inputs[0], to, attr,
                         lambda: tvm_impl(bb, inputs, attr, params))

        return convert


@register("CastLike")
class CastLike(OnnxOpConverter):
    @classmethod
    def get_converter(cls, opset):
        tvm_impl = _tvm_converter("CastLike").get_converter(opset)

        def convert(bb, inputs, attr, params):
            to = _dtype_of(inputs[1])
            if to is None:
                return tvm_impl(bb, inputs, attr, params)
            return _cast(bb, inputs[0], to, attr,
                         lambda: tvm_impl(bb, inputs, attr, params))

        return convert
