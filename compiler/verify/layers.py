"""Per-layer differences between two runs of one model, and the report ``mcc compare``
prints: each marked tensor's cosine similarity, max abs error and relative error, the
culprit (where the error jumps) and the layers that add the most error.

Errors accumulate downstream, so the largest error is usually at the last layer; what
points at the layer that *loses* accuracy is how much a layer adds to the error of the
tensors that feed it. Hence two figures per layer: ``rel_err`` = ||a - e|| / ||e|| (int and
bool tensors: the share of elements that differ, compared exactly) and ``input_err``, the
worst ``rel_err`` among the nearest compared tensors that feed it (0 for graph inputs).
The culprit is the first layer, in graph order, whose error exceeds the threshold and at
least doubles its inputs' error (else the first over the threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mcc.verify.compare import cosine

JUMP = 2.0  # a layer "jumps" when its error is at least this times its inputs'
DEFAULT_THRESHOLD = 1e-3  # relative error below this is float noise (fp32 orderings)


@dataclass(frozen=True)
class LayerDiff:
    index: int  # graph (topological) order
    tensor: str
    node: str
    op: str
    shape: tuple
    dtype: str
    cosine: float | None  # None for int / bool tensors
    max_abs: float
    rel_err: float  # float: ||a - e|| / ||e||; int / bool: share of elements that differ
    input_err: float  # worst rel_err of the compared tensors feeding this one
    exact: bool  # int / bool: compared element for element
    note: str = ""  # shape / dtype / NaN mismatch

    @property
    def added(self) -> float:
        """The error this layer adds to its inputs'."""
        if math.isinf(self.rel_err):
            return self.rel_err
        return max(0.0, self.rel_err - self.input_err)

    def exceeds(self, threshold: float) -> bool:
        return self.rel_err > 0 if self.exact else self.rel_err > threshold

    def to_json(self) -> dict:
        return {"index": self.index, "tensor": self.tensor, "node": self.node, "op": self.op,
                "shape": list(self.shape), "dtype": self.dtype, "cosine": _finite(self.cosine),
                "max_abs": _finite(self.max_abs), "rel_err": _finite(self.rel_err),
                "input_err": _finite(self.input_err), "added_err": _finite(self.added),
                "exact": self.exact, "note": self.note}


def _finite(value):
    """JSON has no inf / nan: those become strings."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def diff_tensor(actual, expected) -> dict:
    """The error figures of one tensor: cosine, max_abs, rel_err, exact, note."""
    a, e = np.asarray(actual), np.asarray(expected)
    exact = not (np.issubdtype(e.dtype, np.floating) or np.issubdtype(e.dtype, np.complexfloating))
    out = {"cosine": None if exact else 1.0, "max_abs": 0.0, "rel_err": 0.0, "exact": exact,
           "note": ""}
    if a.shape != e.shape:
        return out | {"cosine": None, "max_abs": math.inf, "rel_err": math.inf,
                      "note": f"shape {list(a.shape)} vs {list(e.shape)}"}
    if exact:
        note = f"dtype {a.dtype} vs {e.dtype}" if a.dtype != e.dtype else ""
        if a.size == 0:
            return out | {"note": note, "rel_err": 1.0 if note else 0.0}
        differ = a.astype(np.float64) != e.astype(np.float64)
        share = float(differ.mean())
        return out | {"max_abs": float(np.abs(a.astype(np.float64) - e.astype(np.float64)).max()),
                      "rel_err": max(share, 1.0 if note else 0.0), "note": note}
    note = f"dtype {a.dtype} vs {e.dtype}" if a.dtype != e.dtype else ""
    a, e = a.astype(np.float64).reshape(-1), e.astype(np.float64).reshape(-1)
    if a.size == 0:
        return out | {"note": note}
    bad_a, bad_e = ~np.isfinite(a), ~np.isfinite(e)
    if (bad_a != bad_e).any() or not np.array_equal(a[bad_a], e[bad_e], equal_nan=True):
        return out | {"cosine": None, "max_abs": math.inf, "rel_err": math.inf,
                      "note": "NaN / inf in different places"}
    a, e = np.where(bad_a, 0.0, a), np.where(bad_e, 0.0, e)
    diff = a - e
    norm_e = float(np.linalg.norm(e))
    norm_d = float(np.linalg.norm(diff))
    rel = norm_d / norm_e if norm_e else (0.0 if norm_d == 0 else math.inf)
    return out | {"cosine": cosine(a, e), "max_abs": float(np.abs(diff).max()), "rel_err": rel,
                  "note": note}


def diff_layers(layers, actual: dict, expected: dict) -> list[LayerDiff]:
    """LayerDiffs of mcc.verify.marking Layers (or anything with index, tensor, node, op,
    feeds) present in both runs' outputs, in their order."""
    errors: dict[str, float] = {"": 0.0}
    found = []
    for layer in layers:
        if layer.tensor not in actual or layer.tensor not in expected:
            continue
        figures = diff_tensor(actual[layer.tensor], expected[layer.tensor])
        input_err = max((errors.get(f, 0.0) for f in layer.feeds), default=0.0)
        value = np.asarray(expected[layer.tensor])
        diff = LayerDiff(layer.index, layer.tensor, layer.node, layer.op, tuple(value.shape),
                         str(value.dtype), input_err=input_err, **figures)
        errors[layer.tensor] = diff.rel_err
        found.append(diff)
    return found


def find_culprit(layers: list[LayerDiff], threshold: float) -> LayerDiff | None:
    """The first layer over ``threshold`` whose error jumps (>= JUMP x its inputs'), else
    the first over ``threshold``, else None."""
    over = [d for d in layers if d.exceeds(threshold)]
    jumps = [d for d in over if d.exact or math.isinf(d.rel_err)
             or d.rel_err >= JUMP * d.input_err]
    return (jumps or over or [None])[0]


@dataclass
class CompareReport:
    """What ``mcc compare`` found: ``layers`` in graph order, the ``culprit``, ``to_json()``
    and ``lines(top)``."""

    model: str
    reference: str  # "onnxruntime fp32" or "mcc fp32"
    build: str  # the compile options that differ from the defaults, as text
    feed: str  # where the inputs came from
    layers: list[LayerDiff]
    threshold: float
    per_layer: bool  # False for a .so: only its outputs
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def culprit(self) -> LayerDiff | None:
        """Where the error jumps (None for a .so: its outputs have no order to jump in)."""
        return find_culprit(self.layers, self.threshold) if self.per_layer else None

    def worst(self, top: int) -> list[LayerDiff]:
        """The ``top`` layers that add the most error, worst first."""
        return sorted(self.layers, key=lambda d: (-d.added, d.index))[:top]

    def to_json(self) -> dict:
        culprit = self.culprit
        return {"model": self.model, "reference": self.reference, "build": self.build,
                "inputs": self.feed, "per_layer": self.per_layer, "threshold": self.threshold,
                "culprit": None if culprit is None else culprit.to_json(),
                "layers": [d.to_json() for d in self.layers], "notes": self.notes,
                "seconds": round(self.seconds, 2)}

    def lines(self, top: int = 10) -> list[str]:
        what = "layers" if self.per_layer else "outputs"
        out = [f"compare {self.model} ({self.build}) vs {self.reference} on {self.feed}: "
               f"{len(self.layers)} {what} in {self.seconds:.1f} s"]
        out += [f"note: {n}" for n in self.notes]
        culprit = self.culprit
        over = sum(d.exceeds(self.threshold) for d in self.layers)
        if not self.per_layer or culprit is None:
            out.append(f"{over} of {len(self.layers)} {what} exceed relative error "
                       f"{self.threshold:g} (int / bool: any difference)")
        else:
            out.append(f"culprit: #{culprit.index} {culprit.op} '{culprit.node}' -> "
                       f"'{culprit.tensor}': rel err {culprit.rel_err:.3g} (its inputs "
                       f"{culprit.input_err:.3g})" + (f", {culprit.note}" if culprit.note else ""))
        header = f"{'#':>4} {'op':<14} {'node':<28} {'cosine':>9} {'max abs':>9} " \
                 f"{'rel err':>9} {'added':>9}"
        out += [f"worst {min(top, len(self.layers))} by error added:" if self.per_layer
                else "outputs, worst first:", header]
        for d in self.worst(top):
            shown = "exact" if d.exact else f"{d.cosine:.6f}" if d.cosine is not None else "-"
            out.append(f"{d.index:>4} {d.op[:14]:<14} {_short(d.node, 28):<28} {shown:>9} "
                       f"{d.max_abs:>9.3g} {d.rel_err:>9.3g} {d.added:>9.3g}"
                       + (f"  {d.note}" if d.note else ""))
        return out


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]
