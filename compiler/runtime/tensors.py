"""Tensor descriptions shared by import, runtime, verification and benchmarks.

A dimension is an int, or a str naming a symbolic size (e.g. ``"batch"``) that
is bound when the module runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcc.errors import MccError

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[Dim, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict) -> TensorSpec:
        return cls(data["name"], tuple(data["shape"]), data["dtype"])

    def shape_text(self) -> str:
        return "[" + ",".join(str(d) for d in self.shape) + "]"


def check_feed(specs: list[TensorSpec], feed: dict) -> list[np.ndarray]:
    """Validate a name -> array feed against the specs; return arrays in spec order.

    Symbolic dimensions must agree across inputs (``batch`` is one number).
    Raises MccError naming the input and what was expected.
    """
    if not isinstance(feed, dict):
        raise MccError(f"inputs must be a dict of input name to array, got {type(feed).__name__}")
    names = [s.name for s in specs]
    unknown = [k for k in feed if k not in names]
    if unknown:
        raise MccError(f"unknown input '{unknown[0]}'; the model's inputs are: {', '.join(names)}")
    missing = [n for n in names if n not in feed]
    if missing:
        raise MccError(f"missing input '{missing[0]}'; the model's inputs are: {', '.join(names)}")
    bound: dict[str, int] = {}
    arrays = []
    for spec in specs:
        array = np.asarray(feed[spec.name])
        if str(array.dtype) != spec.dtype:
            raise MccError(f"input '{spec.name}' has dtype {array.dtype}, expected {spec.dtype}")
        if array.ndim != len(spec.shape):
            raise MccError(f"input '{spec.name}' has shape {list(array.shape)}, "
                           f"expected {spec.shape_text()}")
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want != got:
                raise MccError(f"input '{spec.name}' has shape {list(array.shape)}, expected "
                               f"{spec.shape_text()} (axis {axis} must be {want})")
            if isinstance(want, str) and bound.setdefault(want, got) != got:
                raise MccError(f"input '{spec.name}' has {want}={got} on axis {axis}, but another "
                               f"input set {want}={bound[want]}")
        arrays.append(array if array.flags.c_contiguous else array.copy(order="C"))  # 0-d stays 0-d
    return arrays


def random_inputs(specs: list[TensorSpec], seed: int = 0, symbolic_size: int = 1,
                  rules: dict | None = None) -> dict:
    """Seeded inputs for verification and benchmarks.

    Floats are standard normal; integers are drawn from [0, 10), or by the input's rule
    in ``rules`` (name -> mcc.frontends.feeds.ValueRule, derived from how the model uses the
    input: index ranges, non-zero divisors, 0/1 masks); symbolic dims become
    ``symbolic_size``.
    """
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else symbolic_size for d in spec.shape)
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f" or dtype.name.startswith(("bfloat", "float")):  # and ml_dtypes floats
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu" and rules and spec.name in rules:
            feed[spec.name] = rules[spec.name].draw(rng, shape, dtype)
        elif dtype.kind in "iu":
            feed[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise MccError(f"cannot make random data for input '{spec.name}' of dtype {spec.dtype}")
    return feed


def read_npz(path) -> dict:
    """An .npz feed keyed by input name, read without pickles (`mcc run`, `mcc profile`,
    `mcc compare --inputs`); a missing or unreadable file is one line naming it."""
    from pathlib import Path

    if not Path(path).exists():
        raise MccError(f"inputs file '{path}' not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as err:  # ValueError, EOFError, zipfile.BadZipFile, zlib.error ...
        from mcc.errors import first_line

        raise MccError(f"'{path}' is not a readable .npz file: {first_line(err)}") from None


def parse_input_shapes(items: list[str] | tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=D0,D1,...`` options (the CLI's ``--input-shape``) into a dict."""
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        if not sep or not name:
            raise MccError(f"--input-shape '{item}' must look like NAME=D0,D1,... "
                           "(e.g. input=1,3,224,224)")
        try:
            values = tuple(int(d) for d in dims.split(",")) if dims.strip() else ()
        except ValueError:
            raise MccError(f"--input-shape '{item}': dimensions must be integers") from None
        if any(v <= 0 for v in values):
            raise MccError(f"--input-shape '{item}': dimensions must be positive")
        shapes[name] = values
    return shapes


def to_storage(array: np.ndarray) -> np.ndarray:
    """A sub-byte ml_dtypes array as int8/uint8 (other arrays unchanged): TVM's runtime holds
    int4/uint4/int2/uint2/float4 tensors one element per byte."""
    name = array.dtype.name
    if name == "float4_e2m1fn":
        return array.view(np.uint8)
    if name in ("int4", "int2"):
        return array.astype(np.int8)
    if name in ("uint4", "uint2"):
        return array.astype(np.uint8)
    return array
