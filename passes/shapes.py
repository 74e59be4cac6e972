"""Static shapes of Relax values: the one helper passes and frontends read shapes with."""

from __future__ import annotations

from tvm import relax


def static_shape(expr) -> tuple[int, ...] | None:
    """The dimensions of a Relax tensor value when all are known integers, else None."""
    return static_dims(expr.ty)


def static_dims(ty) -> tuple[int, ...] | None:
    """The dimensions of a Relax tensor type when all are known integers, else None."""
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    values = getattr(ty.shape, "values", None)
    if values is None or not all(hasattr(v, "value") for v in values):
        return None
    return tuple(int(v.value) for v in values)
