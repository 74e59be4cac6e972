"""Small helpers shared by mcc's ONNX converters (static shapes, typed constants)."""

from __future__ import annotations

import numpy as np
from tvm import relax


def shape_of(x) -> list[int]:
    """Static dims of a Relax tensor value (converters here need them known)."""
    dims = x.ty.shape
    if dims is None or not hasattr(dims, "values"):
        raise ValueError("mcc converter needs a tensor of known shape")
    out = []
    for d in dims.values:
        if not hasattr(d, "value"):
            raise ValueError(f"mcc converter needs static shapes, got dim {d}")
        out.append(int(d.value))
    return out


def dtype_of(x) -> str:
    return str(x.ty.dtype)


def const(value, dtype: str):
    """A Relax constant of ``dtype`` (numpy cannot hold bfloat16: cast in Relax then)."""
    if dtype == "bfloat16":
        return relax.op.astype(relax.const(np.asarray(value, np.float32)), "bfloat16")
    return relax.const(np.asarray(value, dtype=dtype), dtype)


def emit(bb, expr):
    return bb.normalize(expr)
