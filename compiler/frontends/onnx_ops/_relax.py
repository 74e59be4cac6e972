"""Small helpers shared by mcc's ONNX converters (static shapes, typed constants)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from mcc.passes.shapes import static_shape

# ONNX TensorProto data type -> Relax dtype, for the attributes that name one
ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 6: "int32",
               7: "int64", 3: "int8", 2: "uint8"}


def shape_of(x) -> list[int]:
    """Static dims of a Relax tensor value (converters here need them known)."""
    dims = static_shape(x)
    if dims is None:
        raise ValueError(f"mcc converter needs static shapes, got {x.ty}")
    return list(dims)


def dtype_of(x) -> str:
    return str(x.ty.dtype)


def const(value, dtype: str):
    """A Relax constant of ``dtype`` (numpy cannot hold bfloat16: cast in Relax then)."""
    if dtype == "bfloat16":
        return relax.op.astype(relax.const(np.asarray(value, np.float32)), "bfloat16")
    return relax.const(np.asarray(value, dtype=dtype), dtype)


def emit(bb, expr):
    return bb.normalize(expr)
