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
    """Elementwise ``|a - e| <= atol + rtol * |e|`` (NaNs and infinities must match in place
    and sign), with error figures."""
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
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if ((inf_a | inf_e) & (a != e)).any():  # equal infinities compare equal, nothing else
        return OutputError(name, float("inf"), float("inf"), False,
                           "infinities in different places or of different sign")
    a, e = np.where(nan_a | inf_a, 0.0, a), np.where(nan_e | inf_e, 0.0, e)
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


def cosine(actual: np.ndarray, expected: np.ndarray) -> float:
    """Cosine similarity of two tensors, flattened, in float64 (1.0 for two zero tensors)."""
    a = np.nan_to_num(np.asarray(actual, np.float64).reshape(-1))
    e = np.nan_to_num(np.asarray(expected, np.float64).reshape(-1))
    if a.shape != e.shape:
        return float("nan")
    na, ne = np.linalg.norm(a), np.linalg.norm(e)
    if na == 0 or ne == 0:
        return 1.0 if na == ne else 0.0
    return float(a @ e / (na * ne))


@dataclass(frozen=True)
class CosineReport:
    """Reduced-precision verification (``--precision bf16``): each output's cosine similarity
    to the fp32 reference must be at least ``minimum``; the elementwise errors are reported."""

    base: VerifyReport
    cosines: dict
    minimum: float

    @property
    def outputs(self):
        return self.base.outputs

    @property
    def ok(self) -> bool:
        return all(c >= self.minimum for c in self.cosines.values())

    def summary(self) -> str:
        worst = min(self.cosines.values(), default=1.0)
        worst_abs = max((o.max_abs for o in self.outputs), default=0.0)
        return (f"vs {self.base.reference}: min cosine {worst:.7f} (>= {self.minimum:g}), "
                f"max abs err {worst_abs:.3g} {'ok' if self.ok else 'FAILED'}")

    def failure(self) -> str:
        name = next(n for n, c in self.cosines.items() if not c >= self.minimum)
        return (f"verification failed: output '{name}' has cosine similarity "
                f"{self.cosines[name]:.6f} to {self.base.reference}, below {self.minimum:g}")

    def to_json(self) -> dict:
        data = self.base.to_json()
        data.update(ok=self.ok, cosine_min=self.minimum,
                    cosine={k: round(v, 9) for k, v in self.cosines.items()})
        return data


def cosine_check(base: VerifyReport, actual: dict, expected: dict,
                 minimum: float = 0.999) -> CosineReport:
    return CosineReport(base, {name: cosine(actual[name], expected[name]) for name in expected},
                        minimum)
