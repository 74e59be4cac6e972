"""Static shapes of Relax values: the one helper passes and frontends read shapes with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tvm import relax, tirx


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


@dataclass(frozen=True)
class ConvGeometry:
    """Static geometry of one blocked NHWC convolution (weights OHWI before packing), shared
    by mcc's int8 and bf16 kernels; a subclass sets the channel blocks its intrinsic takes."""

    oc_block: ClassVar[int]
    ic_block: ClassVar[int]

    n: int
    h: int
    w: int
    ic: int
    oc: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right

    @property
    def ic_padded(self) -> int:
        return -(-self.ic // self.ic_block) * self.ic_block

    @property
    def oc_blocks(self) -> int:
        return -(-self.oc // self.oc_block)

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_out_hw(self)


@dataclass(frozen=True)
class DepthwiseGeometry:
    """Static geometry of one depthwise convolution (NHWC data, one filter per channel),
    shared by mcc's int8 and bf16 depthwise kernels."""

    n: int
    h: int
    w: int
    c: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_out_hw(self)


def conv_out_hw(g) -> tuple[int, int]:
    """Output height and width of a convolution geometry (``h, w, kh, kw, stride, padding``)."""
    pt, pl, pb, pr = g.padding
    return ((g.h + pt + pb - g.kh) // g.stride[0] + 1,
            (g.w + pl + pr - g.kw) // g.stride[1] + 1)


def int64_dims(*values: int) -> tuple:
    """Static dims as int64, the form Relax's own kernels have: FuseTIR matches the
    kernels mcc writes in TE (int8, bf16) against them."""
    return tuple(tirx.IntImm("int64", v) for v in values)
