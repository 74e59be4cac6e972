"""``--precision auto``: build fp32, bf16 and int8, keep the fastest within the accuracy budget.

    samples    the --calibration samples, split as int8 splits them (--holdout): accuracy
               is measured on the held-out ones (the calibration ones when none are held
               out); without --calibration, int8 is skipped (it needs real samples) and the
               others are measured on seeded synthetic inputs, and the report says so
    candidates fp32 always; bf16 where the target has bf16 dot products (a whole-model
               candidate: every eligible conv / matmul, no per-layer fallback); int8 with
               its per-layer fallback (--accuracy-budget: the most sensitive ops back to
               fp32, mcc.driver.quantization), on the same imported and pruned graph
    accuracy   each candidate's outputs against the fp32 module's on the same samples
               (mcc.driver.quantization.AccuracyReport: loss = worst of 1 - cosine and
               1 - top-1 agreement)
    timing     the built candidates timed in alternating blocks (mcc.verify.benchmark)
    choice     the fastest candidate whose loss is within the budget; fp32 always is

A budget of 0 admits only a candidate whose outputs equal fp32's exactly (a cosine that
rounds to 1 is not enough), so it keeps fp32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from mcc.errors import MccError

ORDER = ("fp32", "bf16", "int8")  # highest precision first: the tie-break
SYNTHETIC_SAMPLES = 4  # without --calibration: seeded synthetic inputs for the accuracy


@dataclass
class Candidate:
    """One precision tried: its build, accuracy vs fp32 and latency, or why it was dropped."""

    name: str
    lowered: object = None  # mcc.build.lower.Lowered
    layout_choice: object = None
    quantizer: object = None  # int8: mcc.driver.quantization.Quantizer
    accuracy: object = None  # AccuracyReport vs the fp32 module (None for fp32 itself)
    latency_ms: float | None = None
    layers: dict[str, str] = field(default_factory=dict)  # conv / matmul site -> precision
    dropped: str = ""  # why it was not built or not measured

    @property
    def loss(self) -> float | None:
        if self.dropped:
            return None
        return 0.0 if self.accuracy is None else self.accuracy.loss

    @property
    def exact(self) -> bool:
        """Outputs equal to fp32's on every sample."""
        return self.accuracy is None or all(o.max_abs == 0 for o in self.accuracy.outputs)

    def within(self, budget: float) -> bool:
        return not self.dropped and (self.exact or (budget > 0 and self.loss <= budget))

    def to_json(self, budget: float) -> dict:
        if self.dropped:
            return {"dropped": self.dropped}
        return {"latency_ms": round(self.latency_ms, 4), "loss": self.loss,
                "within_budget": self.within(budget),
                "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
                "layers": _counts(self.layers)}


def _counts(layers: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for site, precision in layers.items():
        out.setdefault(precision, []).append(site)
    return out


def pick_fastest(candidates: list[Candidate], budget: float) -> Candidate:
    """The fastest candidate within ``budget``; on equal times, the higher precision."""
    eligible = [c for c in candidates if c.within(budget) and c.latency_ms is not None]
    if not eligible:
        raise MccError("--precision auto: no candidate was built and timed")
    rank = {name: i for i, name in enumerate(ORDER)}
    return min(eligible, key=lambda c: (c.latency_ms, rank.get(c.name, len(ORDER))))


@dataclass
class PrecisionChoice:
    """What ``auto`` tried and kept: the metadata's and the report's ``precision``."""

    chosen: Candidate
    candidates: list[Candidate]
    budget: float
    data: str  # held-out / calibration / synthetic
    samples: int

    def to_json(self) -> dict:
        out = {"mode": "auto", "chosen": self.chosen.name, "accuracy_budget": self.budget,
               "accuracy_data": self.data, "accuracy_samples": self.samples,
               "layers": dict(self.chosen.layers),
               "candidates": {c.name: c.to_json(self.budget) for c in self.candidates}}
        if self.chosen.lowered.precision:  # bf16: its kernels and sites
            out |= {k: v for k, v in self.chosen.lowered.precision.items() if k != "mode"}
        return out

    def lines(self) -> list[str]:
        return describe(self.to_json())


def describe(info: dict) -> list[str]:
    """Text lines of a ``precision: {mode: auto}`` entry (the compile's, ``mcc info``'s)."""
    lines = [f"[mcc] precision auto -> {info['chosen']} (budget {info['accuracy_budget']:g}; "
             f"accuracy vs fp32 on {info['accuracy_samples']} {info['accuracy_data']} "
             "sample(s))"]
    rank = {name: i for i, name in enumerate(ORDER)}  # the metadata's keys come back sorted
    for name, c in sorted(info["candidates"].items(), key=lambda item: rank.get(item[0], 9)):
        if "dropped" in c:
            lines.append(f"[mcc]   {name:<5} dropped: {c['dropped']}")
            continue
        layers = ", ".join(f"{len(c['layers'][p])} {p}" for p in reversed(ORDER)
                           if p in c["layers"])
        mark = "  <- chosen" if name == info["chosen"] else (
            "" if c["within_budget"] else "  (over budget)")
        lines.append(f"[mcc]   {name:<5} {c['latency_ms']:9.3f} ms  loss {c['loss']:<9.3g}"
                     f"{'  conv/matmul: ' + layers if layers else ''}{mark}")
    return lines


def time_candidates(runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median ms per candidate, timed in alternating blocks (tests replace this)."""
    from mcc.verify.benchmark import time_interleaved

    return {name: t.median_ms for name, t in time_interleaved(runs).items()}


def choose_precision(mod, imported, config, target, stages, lower) -> PrecisionChoice:
    """Build, measure and time each candidate; ``lower(mod, config, stages)`` is the
    driver's passes-schedule-build step, returning (Lowered, LayoutChoice or None)."""
    from mcc.runtime.vm_runner import vm_runner

    budget = config.accuracy_budget
    candidates = _candidates(config, target, stages)
    feeds, data, quantize_data = _samples(imported, config, stages)

    for i, cand in enumerate(candidates, 1):
        if cand.dropped:
            stages.say(f"[mcc] precision auto {i}/{len(candidates)}: {cand.name} skipped: "
                       f"{cand.dropped}")
            continue
        stages.say(f"[mcc] precision auto {i}/{len(candidates)}: building {cand.name}")
        _build(cand, mod, imported, config, target, stages, lower, quantize_data, budget)

    names = [t.name for t in imported.outputs]
    inputs = [t.name for t in imported.inputs]
    runs = {c.name: vm_runner(c.lowered.executable, inputs) for c in candidates
            if not c.dropped}
    from mcc.driver.quantization import measure_accuracy

    with stages.stage("precision accuracy") as st:
        reference = [dict(zip(names, runs["fp32"](f))) for f in feeds]
        for cand in candidates:
            if cand.name != "fp32" and not cand.dropped:
                got = [dict(zip(names, runs[cand.name](f))) for f in feeds]
                cand.accuracy = measure_accuracy(reference, got, data)
        st.detail = ", ".join(f"{c.name} loss {c.loss:.3g}" for c in candidates
                              if not c.dropped)
    feed = feeds[0]
    with stages.stage("precision timing") as st:
        times = time_candidates({name: (lambda r=run: r(feed)) for name, run in runs.items()})
        for cand in candidates:
            cand.latency_ms = times.get(cand.name)
        st.detail = ", ".join(f"{c.name} {c.latency_ms:.3f} ms" for c in candidates
                              if c.latency_ms is not None)
    _fill_fp32_layers(candidates)
    chosen = pick_fastest(candidates, budget)
    if chosen.quantizer is not None:
        chosen.quantizer.accuracy = chosen.accuracy
    choice = PrecisionChoice(chosen, candidates, budget, data, len(feeds))
    for line in choice.lines():
        stages.say(line)
    return choice


def _candidates(config, target, stages) -> list[Candidate]:
    from mcc.schedule.rules.bf16 import has_bf16
    from mcc.schedule.rules.bf16_isa import NEON, X86
    from mcc.targets.cpu_info import is_aarch64

    out = [Candidate("fp32"), Candidate("bf16"), Candidate("int8")]
    if not has_bf16(target):
        feature = NEON.feature if is_aarch64(target) else X86.feature
        out[1].dropped = f"target {config.target.name} lacks {feature}"
    if config.calibration is None:
        out[2].dropped = "no --calibration data (int8 needs real samples)"
        stages.say("[mcc] WARNING: --precision auto without --calibration: int8 is not tried "
                   "(it calibrates on real samples), and accuracy is measured on "
                   f"{SYNTHETIC_SAMPLES} seeded synthetic inputs")
    return out


def _samples(imported, config, stages):
    """(accuracy feeds, what they are, all samples for int8 or None). The held-out split is
    int8's own (mcc.driver.quantization.split_holdout): the same samples for every one."""
    from mcc.driver.quantization import load_calibration, split_holdout
    from mcc.runtime.tensors import random_inputs

    if config.calibration is None:
        plan = imported.feed_plan
        rules = plan.rules if plan is not None else None
        return ([random_inputs(imported.inputs, seed=config.seed + i, rules=rules)
                 for i in range(SYNTHETIC_SAMPLES)], "synthetic", None)
    samples = load_calibration(imported, config, stages.say)
    calibration, held_out = split_holdout(samples, config.holdout)
    if held_out:
        return held_out, "held-out", samples
    return calibration, "calibration", samples


class _BuildFailed(MccError):
    """A budget trial of int8 did not build: int8 is dropped, not the compile."""


def _build(cand: Candidate, mod, imported, config, target, stages, lower, samples,
           budget: float) -> None:
    """Quantize (int8) and lower one candidate; a candidate that cannot meet the budget
    or fails to build is dropped with the reason (fp32's failure is the compile's)."""
    from mcc.driver.quantization import BudgetNotMet, NothingToQuantize, Quantizer

    # budget 0 admits exact outputs only, which int8 never gives: report it unfitted
    fitted = budget if budget > 0 else None
    cand_config = dataclasses.replace(config, precision=cand.name,
                                      quantize="int8" if cand.name == "int8" else None,
                                      accuracy_budget=fitted if cand.name == "int8" else None)
    sub = stages.named(cand.name + " ")
    trial = []  # the last budget trial: (module, its lowering), the module int8 returns

    def build_trial(m):
        try:
            trial[:] = [m, lower(m, cand_config, sub)]
        except MccError as err:
            raise _BuildFailed(f"build failed: {err}") from None
        return trial[1][0].executable

    if cand.name == "int8":  # a bad --exclude or sample file stays the user's error
        cand.quantizer = Quantizer(dataclasses.replace(imported, mod=mod), cand_config,
                                   target, say=stages.say, data=samples, build=build_trial)
        try:
            with sub.stage("quantize") as st:
                mod = cand.quantizer.run()
                st.detail = cand.quantizer.summary()
        except (BudgetNotMet, NothingToQuantize, _BuildFailed) as err:
            cand.dropped = str(err)
        if not cand.dropped and not cand.quantizer.report.quantized:
            cand.dropped = "no op of this model can be int8 (it would be the fp32 module)"
    if not cand.dropped and trial and trial[0] is mod:  # int8's fitted module: built already
        cand.lowered, cand.layout_choice = trial[1]
    elif not cand.dropped:
        try:
            cand.lowered, cand.layout_choice = lower(mod, cand_config, sub)
        except MccError as err:
            if cand.name == "fp32":
                raise
            cand.dropped = f"build failed: {err}"
    if cand.dropped:
        stages.say(f"[mcc] precision auto: {cand.name} dropped: {cand.dropped}")
        return
    cand.layers = _layers(cand)


def _layers(cand: Candidate) -> dict[str, str]:
    """conv / matmul site -> the precision it runs in, from the candidate's own report."""
    if cand.quantizer is not None:
        info = cand.quantizer.to_json()
        return ({s: "int8" for s in info["int8_ops"]}
                | {s: "fp32" for s in info["fp32_ops"]})
    if cand.lowered.precision:
        info = cand.lowered.precision
        return {s: "bf16" for s in info["bf16_ops"]} | {s: "fp32" for s in info["fp32_ops"]}
    return {}


def _fill_fp32_layers(candidates: list[Candidate]) -> None:
    """fp32 runs every site the other candidates name in fp32."""
    sites = {}
    for cand in candidates:
        sites |= dict.fromkeys(sorted(cand.layers, key=_site_key))
    candidates[0].layers = dict.fromkeys(sorted(sites, key=_site_key), "fp32")


def _site_key(site: str):
    op, _, index = site.rpartition("_")
    return (op, int(index)) if index.isdigit() else (site, 0)
