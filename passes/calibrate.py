"""Calibration: run the fp32 model on sample inputs and turn what it sees into int8 ranges.

Separate from quantization, as in ONNX Runtime's quantization package: this pass only
observes. ``calibrate`` builds a copy of the fp32 model whose ``main`` also returns the
tensors to observe (the activations entering each quantizable op), runs it on every
sample, feeds the values to a collector, and computes one validated (low, high) range
per tensor with the chosen method:

    minmax      the observed extremes (nothing clipped; outliers widen the step)
    percentile  the 0.01th / 99.99th percentiles (clips rare outliers)
    entropy     the clipping threshold whose 8-bit histogram is closest, in KL
                divergence, to the fp32 histogram (TensorRT's method)

The fp32 outputs of the same runs are kept: the accuracy report compares the int8
module with them on the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mcc.errors import MccError

METHODS = ("minmax", "percentile", "entropy")
_KEEP_PER_SAMPLE = 20_000  # values kept per tensor and sample for percentile / entropy
_PERCENTILE = 99.99


@dataclass
class TensorStats:
    """What calibration saw of one tensor: extremes, energy and a value subsample."""

    name: str
    low: float = np.inf
    high: float = -np.inf
    sum_squares: float = 0.0
    count: int = 0
    values: list = field(default_factory=list)

    def observe(self, array: np.ndarray, rng: np.random.Generator) -> None:
        flat = np.asarray(array, dtype=np.float32).reshape(-1)
        if not np.isfinite(flat).all():
            raise MccError(f"calibration: tensor '{self.name}' holds NaN or Inf on a calibration "
                           "sample; check the sample data")
        self.low = min(self.low, float(flat.min()))
        self.high = max(self.high, float(flat.max()))
        self.sum_squares += float(np.dot(flat.astype(np.float64), flat))
        self.count += flat.size
        if flat.size > _KEEP_PER_SAMPLE:
            flat = rng.choice(flat, _KEEP_PER_SAMPLE, replace=False)
        self.values.append(flat)

    @property
    def mean_square(self) -> float:
        return self.sum_squares / max(self.count, 1)

    def range(self, method: str) -> tuple[float, float]:
        """A validated (low, high) with low <= 0 <= high, so zero is exactly representable."""
        values = np.concatenate(self.values)
        low, high = self.low, self.high
        if method == "percentile":
            high = float(np.percentile(values, _PERCENTILE)) if high > 0 else high
            low = float(np.percentile(values, 100 - _PERCENTILE)) if low < 0 else low
        elif method == "entropy":
            if low >= 0:
                high = _entropy_threshold(values, 255)
            else:
                threshold = _entropy_threshold(np.abs(values), 127)
                low, high = max(low, -threshold), min(high, threshold)
        low, high = min(low, 0.0), max(high, 0.0)
        if high - low < 1e-12:  # a constant-zero tensor: any positive step works
            high = low + 1e-6
        return low, high


@dataclass
class Calibration:
    """Ranges per observed tensor, their statistics, and the fp32 outputs per sample."""

    method: str
    stats: list[TensorStats]
    ranges: list[tuple[float, float]]
    outputs: list[dict[str, np.ndarray]]  # fp32 outputs of main, per sample
    # fp32 outputs on the held-out samples: run, but not observed (the accuracy report's data)
    held_out_outputs: list[dict[str, np.ndarray]] = field(default_factory=list)


def calibrate(mod, observe: list, names: list[str], samples: list[dict], method: str,
              run_module: Callable, output_names: list[str],
              held_out: list[dict] = ()) -> Calibration:
    """Run ``mod`` (fp32, non-dataflow ``main``) on ``samples``; observe the ``observe``
    expressions (named ``names``); return their ranges under ``method``. ``held_out``
    samples are run for their fp32 outputs only: they do not move any range.

    ``run_module(mod) -> callable(feed) -> list of arrays`` builds and runs a module
    (so the caller decides the target and schedules).
    """
    if method not in METHODS:
        raise MccError(f"unknown calibration method '{method}'; choose one of "
                       f"{', '.join(METHODS)}")
    if not samples:
        raise MccError("calibration needs at least one sample")
    instrumented = instrument(mod, observe)
    runner = run_module(instrumented)
    stats = [TensorStats(name) for name in names]
    rng = np.random.default_rng(0)
    outputs = []
    n_out = len(output_names)
    for index, feed in enumerate(samples):
        values = _run_sample(runner, feed, index)
        outputs.append(dict(zip(output_names, values[:n_out])))
        for stat, value in zip(stats, values[n_out:]):
            stat.observe(value, rng)
    held = [dict(zip(output_names, _run_sample(runner, feed, i)[:n_out]))
            for i, feed in enumerate(held_out)]
    return Calibration(method, stats, [s.range(method) for s in stats], outputs, held)


def _run_sample(runner, feed: dict, index: int) -> list:
    """The fp32 model on one sample; a run-time failure (an input value the model rejects:
    an If branch that cannot run, an index out of range) is a one-line error."""
    from mcc.errors import first_line

    try:
        return runner(feed)
    except Exception as err:  # noqa: BLE001 - TVM run-time checks raise many types
        raise MccError(f"calibration: the fp32 model fails on sample {index}: "
                       f"{first_line(err)}; give samples of real data (--calibration DATA)"
                       ) from None


def instrument(mod, observe: list):
    """A copy of ``mod`` whose ``main`` returns its outputs followed by ``observe``."""
    import tvm
    from tvm import relax

    func = mod["main"]
    body = func.body
    ret = body.body
    fields = list(ret.fields) if isinstance(ret, relax.Tuple) else [ret]
    returned = fields + list(observe)
    new_body = relax.SeqExpr(body.blocks, relax.Tuple(returned))
    new_func = relax.Function(func.params, new_body, relax.TupleType([e.ty for e in returned]),
                              attrs=func.attrs)
    out = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint != "main"})
    out["main"] = new_func
    return relax.transform.Normalize()(out)


def _entropy_threshold(values: np.ndarray, levels: int, bins: int = 2048) -> float:
    """The histogram edge t minimising KL(P || Q), Q = P clipped at t and quantized to
    ``levels`` steps. ``values`` are non-negative."""
    top = float(values.max())
    if top <= 0:
        return top
    hist, edges = np.histogram(values, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best, best_kl = top, np.inf
    for stop in range(levels, bins + 1, 16):
        p = hist[:stop].copy()
        p[-1] += hist[stop:].sum()  # what clipping at edges[stop] folds into the last bin
        nonzero = p > 0
        q = np.zeros(stop)
        for chunk in np.array_split(np.arange(stop), levels):
            keep = chunk[nonzero[chunk]]
            if keep.size:
                q[keep] = hist[chunk].sum() / keep.size
        q[nonzero & (q == 0)] = 1e-4  # smoothing (as ONNX Runtime's): bins the clip emptied
        p_n, q_n = p / p.sum(), q / q.sum()
        kl = float(np.sum(p_n[nonzero] * np.log(p_n[nonzero] / q_n[nonzero])))
        if kl < best_kl:
            best, best_kl = float(edges[stop]), kl
    return best
