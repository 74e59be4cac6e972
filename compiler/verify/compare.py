"""Compare a compiled module's outputs with the reference runtime's on the same inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # over elements whose reference magnitude exceeds atol
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    reference: str
    rtol: float
    atol: float
    outputs: tuple[OutputError, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    def summary(self) -> str:
        worst_abs = max((o.max_abs for o in self.outputs), default=0.0)
        worst_rel = max((o.max_rel for o in self.outputs), default=0.0)
        verdict = "ok" if self.ok else "FAILED"
        return (f"vs {self.reference}: max abs err {worst_abs:.3g}, max rel err {worst_rel:.3g} "
                f"(rtol {self.rtol:g}, atol {self.atol:g}) {verdict}")

    def failure(self) -> str:
        bad = next(o for o in self.outputs if not o.ok)
        what = bad.detail or (f"max abs err {bad.max_abs:.3g}, max rel err {bad.max_rel:.3g}")
        return (f"verification failed: output '{bad.name}' differs from {self.reference} ({what}; "
                f"rtol {self.rtol:g}, atol {self.atol:g})")

    def to_json(self) -> dict:
        return {"reference": self.reference, "rtol": self.rtol, "atol": self.atol, "ok": self.ok,
                "outputs": {o.name: {"max_abs": o.max_abs, "max_rel": o.max_rel, "ok": o.ok}
                            for o in self.outputs}}


def compare_output(name: str, actual: np.ndarray, expected: np.ndarray,
                   rtol: float, atol: float) -> OutputError:
    """Elementwise ``|a - e| <= atol + rtol * |e|`` (NaNs must match), with error figures."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return OutputError(name, float("inf"), float("inf"), False,
                           f"shape {list(actual.shape)} vs {list(expected.shape)}")
    if actual.size == 0:
        return OutputError(name, 0.0, 0.0, True)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if (nan_a != nan_e).any():
        return OutputError(name, float("nan"), float("nan"), False, "NaNs in different places")
    a, e = np.where(nan_a, 0.0, a), np.where(nan_e, 0.0, e)
    diff = np.abs(a - e)
    big = np.abs(e) > atol
    max_rel = float((diff[big] / np.abs(e[big])).max()) if big.any() else 0.0
    ok = bool((diff <= atol + rtol * np.abs(e)).all())
    return OutputError(name, float(diff.max()), max_rel, ok)


def verify(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], reference: str,
           rtol: float, atol: float) -> VerifyReport:
    outputs = tuple(compare_output(name, actual[name], expected[name], rtol, atol)
                    for name in expected)
    return VerifyReport(reference, rtol, atol, outputs)
