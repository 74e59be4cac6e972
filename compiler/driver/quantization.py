"""The driver's "quantize" step: prepare, calibrate, quantize, and measure accuracy.

    prepare    fold constants and batch norms, convert convolutions to NHWC (the layout
               the int8 kernels read), drop dataflow blocks so tensors can be observed
    samples    the user's --calibration data (or, said loudly, seeded random inputs), split
               into calibration samples and held-out samples (--holdout FRACTION; by
               default 20% once there are 10 samples or more)
    calibrate  mcc.passes.calibrate: fp32 ranges of every quantizable op's input
    quantize   mcc.passes.quantize: those ops become u8 x s8 -> s32 kernels; then
               reshapes sink below elementwise ops (mcc.passes.sink_reshape) so a dense
               kernel's bias / GELU / residual add / next quantize fuse into its epilogue,
               and divisions by constants become multiplies (mcc.passes.reciprocal)
    budget     with --accuracy-budget, the most sensitive ops go back to fp32, one step
               at a time, until the measured loss fits the budget
    accuracy   after the build: the int8 module against the fp32 outputs on the held-out
               samples (on the calibration samples when none are held out, and it says so)

``--quantize fp16`` (= ``--precision fp16``) is TVM's mixed-precision pass: conv2d / matmul
on fp16 weights and activations. On aarch64 CPUs with FP16 arithmetic (``+fullfp16``) they
accumulate in fp16 too, so LLVM emits fp16 NEON multiply-adds (``fmla v.8h``: 8 lanes, twice
fp32's); elsewhere (GPUs, x86) they accumulate in fp32. Softmax, reductions and
normalisations stay fp32 (the pass's own policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mcc.errors import MccError
from mcc.runtime.vm_runner import vm_runner

MODES = ("int8", "fp16")
QDQ = "qdq"  # an already-quantized ONNX model: its own scales, no calibration
RANDOM = "random"  # --calibration random: speed tests only
RANDOM_SAMPLES = 4
AUTO_HOLDOUT = 0.2  # share of the samples held out of calibration when --holdout is not given,
AUTO_HOLDOUT_MIN_SAMPLES = 10  # once there are at least this many


class NothingToQuantize(MccError):
    """No conv2d / matmul of the model can run in int8 (``--precision auto`` drops int8)."""


class BudgetNotMet(MccError):
    """No share of int8 ops meets --accuracy-budget (``--precision auto`` drops int8)."""


@dataclass
class OutputAccuracy:
    name: str
    cosine: float
    max_abs: float
    top1: float | None  # fraction of samples whose argmax agrees (classifier outputs)

    def to_json(self) -> dict:
        out = {"cosine": self.cosine, "max_abs_error": self.max_abs}
        if self.top1 is not None:
            out["top1_agreement"] = self.top1
        return out


@dataclass
class AccuracyReport:
    """int8 vs fp32 on the held-out samples (``data="held-out"``) or, when none were held
    out, on the calibration samples themselves (``data="calibration"``)."""

    samples: int
    outputs: list[OutputAccuracy]
    data: str = "calibration"

    @property
    def loss(self) -> float:
        """What --accuracy-budget bounds: the worst of 1 - cosine and 1 - top-1 agreement."""
        worst = 0.0
        for o in self.outputs:
            worst = max(worst, 1.0 - o.cosine, 0.0 if o.top1 is None else 1.0 - o.top1)
        return worst

    def lines(self) -> list[str]:
        if self.data == "held-out":
            where = f"{self.samples} held-out sample(s), not used for calibration"
        else:
            where = f"{self.samples} calibration sample(s), none held out"
        out = [f"[mcc] accuracy vs fp32 on {where}:"]
        for o in self.outputs:
            top1 = "" if o.top1 is None else f", top-1 agreement {o.top1 * 100:.1f}%"
            out.append(f"[mcc]   {o.name}: cosine {o.cosine:.5f}, max abs err {o.max_abs:.4g}"
                       f"{top1}")
        return out

    def summary(self) -> str:
        worst = min(self.outputs, key=lambda o: o.cosine)
        top1 = [o.top1 for o in self.outputs if o.top1 is not None]
        text = f"worst cosine {worst.cosine:.5f} ({worst.name})"
        return text + (f", top-1 agreement {min(top1) * 100:.1f}%" if top1 else "")

    def to_json(self) -> dict:
        return {"samples": self.samples, "data": self.data,
                "reference": "fp32 (this model, before quantization)",
                "outputs": {o.name: o.to_json() for o in self.outputs}}


def split_holdout(samples: list[dict], fraction: float | None) -> tuple[list, list]:
    """(calibration samples, held-out samples): a seeded random ``fraction`` of the samples
    is held out; ``None`` holds out AUTO_HOLDOUT once there are AUTO_HOLDOUT_MIN_SAMPLES."""
    n = len(samples)
    if fraction is None:
        fraction = AUTO_HOLDOUT if n >= AUTO_HOLDOUT_MIN_SAMPLES else 0.0
    if not 0.0 <= fraction < 1.0:
        raise MccError(f"--holdout {fraction:g} must be a fraction in [0, 1)")
    if fraction == 0.0:
        return list(samples), []
    k = max(1, round(n * fraction))
    if n - k < 1:
        raise MccError(f"--holdout {fraction:g} leaves no sample for calibration ({n} "
                       "sample(s) in the data); give more samples or --holdout 0")
    held = set(np.random.default_rng(0).permutation(n)[:k].tolist())
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])


def measure_accuracy(fp32: list[dict], quantized: list[dict],
                     data: str = "calibration") -> AccuracyReport:
    """Per output: cosine similarity and max abs error over all samples, and top-1
    agreement for [batch, classes] outputs."""
    outputs = []
    for name in fp32[0]:
        ref = np.stack([np.asarray(s[name], np.float64) for s in fp32])
        got = np.stack([np.asarray(s[name], np.float64) for s in quantized])
        a, b = ref.reshape(-1), got.reshape(-1)
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        cosine = float(a @ b / norm) if norm > 0 else float(np.array_equal(a, b))
        top1 = None
        if ref.ndim == 3 and ref.shape[-1] > 1:  # samples x batch x classes
            top1 = float((ref.argmax(-1) == got.argmax(-1)).mean())
        outputs.append(OutputAccuracy(name, cosine, float(np.abs(a - b).max()), top1))
    return AccuracyReport(len(fp32), outputs, data)


def wants_quantization(config, mod) -> bool:
    """--quantize was given, or the model is already quantized (QDQ / QLinear ops)."""
    from mcc.passes.quantize import has_qdq

    return bool(config.quantize) or has_qdq(mod)


@dataclass
class Quantizer:
    """State of one quantized compile, from calibration to the accuracy report."""

    imported: object  # mcc.frontends.ImportedModel
    config: object  # mcc.driver.config.CompileConfig
    target: object  # tvm.target.Target
    say: object = print
    sites: list = field(default_factory=list)
    samples: list = field(default_factory=list)  # calibration samples
    held_out: list = field(default_factory=list)  # samples for the accuracy report only
    calibration: object = None
    report: object = None
    fp32_sites: dict = field(default_factory=dict)  # kept fp32 by the budget: name -> reason
    accuracy: AccuracyReport | None = None
    budget_trials: list = field(default_factory=list)
    data: list | None = None  # the samples, when the caller has loaded them already
    build: object = None  # budget trials: module -> executable (default: compile_relax)

    @property
    def fp16_accumulation(self) -> str:
        """What fp16 conv2d / matmul accumulate in: fp16 where the CPU has FP16 arithmetic
        (aarch64 +fullfp16: the point of fp16 there), else fp32."""
        from mcc.targets.cpu_info import has_fp16_arithmetic

        return "float16" if has_fp16_arithmetic(self.target) else "float32"

    @property
    def mode(self) -> str:
        return self.config.quantize or QDQ

    def run(self):
        """The quantized Relax module (dataflow form, ready for the graph passes)."""
        from tvm import relax

        mode = self.mode
        if mode == QDQ:
            return self._run_qdq()
        if mode not in MODES:
            raise MccError(f"unknown --quantize mode '{mode}'; choose one of {', '.join(MODES)}")
        if mode == "fp16":
            return relax.transform.ToMixedPrecision(out_dtype=self.fp16_accumulation)(
                self.imported.mod)
        from mcc.passes.calibrate import calibrate
        from mcc.passes.quantize import find_sites, nothing_to_quantize
        from mcc.targets import resolve_target

        prepared = prepare(self.imported.mod, self.target)
        self.sites = find_sites(prepared)
        usable = [s for s in self.sites if not s.skip]
        if not usable:  # no op can be int8: the whole model stays fp32, as each op would
            from mcc.passes.quantize import QuantizeReport

            self.say(f"[mcc] WARNING: {nothing_to_quantize(self.sites)}; the module stays "
                     "fp32")
            self.report = QuantizeReport([], {s.name: s.skip for s in self.sites})
            return self.imported.mod
        chosen = self._apply_exclusions(usable)
        data = self.data if self.data is not None else self._samples()
        self.samples, self.held_out = split_holdout(data, self.config.holdout)
        names = [t.name for t in self.imported.outputs]
        inputs = self._input_names()
        host = resolve_target(None)  # calibration runs the fp32 model here, whatever the target
        self.calibration = calibrate(
            prepared, [s.data for s in chosen], [s.name for s in chosen], self.samples,
            self.config.calibration_method,
            lambda m: vm_runner(compile_relax(m, host, host.tvm_target(), self.config.tuning_logs),
                                inputs), names, held_out=self.held_out)
        ranges = {s.name: r for s, r in zip(self.calibration.stats, self.calibration.ranges)}
        ranges.update({s.name: s.qdq_range for s in chosen if s.qdq_range is not None})
        mod = self._quantize(prepared, ranges)
        if self.config.accuracy_budget is not None:
            mod = self._fit_budget(prepared, ranges, mod, chosen)
        return mod

    def _run_qdq(self):
        """An already-quantized model: every conv/matmul fed by a DequantizeLinear runs in
        int8 with the model's own activation scale; nothing is calibrated."""
        from mcc.passes.quantize import QuantizeReport, find_sites, has_static_activation_qdq

        if not has_static_activation_qdq(self.imported.mod):  # only run-time scales
            self.sites = find_sites(self.imported.mod)
            self.report = QuantizeReport([], {s.name: "activation scale computed at run time"
                                              for s in self.sites})
            return self.imported.mod
        prepared = prepare(self.imported.mod, self.target)
        self.sites = find_sites(prepared)
        chosen = [s for s in self.sites if not s.skip and s.qdq_range is not None
                  and s.name not in self.config.exclude and s.op not in self.config.exclude]
        return self._quantize(prepared, {s.name: s.qdq_range for s in chosen})

    def _quantize(self, prepared, ranges):
        from tvm import relax

        from mcc.passes.quantize import quantize
        from mcc.passes.reciprocal import divide_by_reciprocal
        from mcc.passes.sink_reshape import sink_reshapes
        from mcc.schedule.rules.int8 import activation_dtype

        mod, self.report = quantize(prepared, ranges, per_tensor=self.config.per_tensor,
                                    weights_on_grid=self.mode == QDQ,
                                    activation_dtype=activation_dtype(self.target))
        # the dense kernels' [1, 1, M, N] views and the importer's 2-D matmul reshapes
        # would keep bias, GELU, residual adds and quantizes out of the kernels' epilogues
        mod = sink_reshapes(mod)
        # vector divisions by constants (GELU's sqrt(2), attention's sqrt(d)) as multiplies
        mod = divide_by_reciprocal(mod)
        return relax.transform.ConvertToDataflow(min_size=1)(mod)

    def _input_names(self) -> list[str]:
        return [t.name for t in self.imported.inputs]

    def _apply_exclusions(self, usable):
        excludes = set(self.config.exclude)
        known = {s.name for s in self.sites} | {s.op for s in self.sites}
        unknown = sorted(excludes - known)
        if unknown:
            raise MccError(f"--exclude '{unknown[0]}' matches no op or node; this model has: "
                           f"{', '.join(sorted(known))}")
        chosen = [s for s in usable if s.name not in excludes and s.op not in excludes]
        for s in usable:
            if s not in chosen:
                self.fp32_sites[s.name] = "excluded"
        if not chosen:
            raise NothingToQuantize("nothing to quantize: --exclude leaves no conv2d or matmul "
                                    "to quantize")
        return chosen

    def _samples(self):
        return load_calibration(self.imported, self.config, self.say)

    def sensitivity(self, chosen) -> list[tuple[str, float]]:
        """Sites ordered most sensitive first, by the estimated relative quantization noise
        of their input (step^2 / 12 over the mean square) plus that of their weights."""
        from mcc.passes.quantize import weight_params

        scores = []
        for site, stats, (low, high) in zip(chosen, self.calibration.stats,
                                            self.calibration.ranges):
            step = (high - low) / 255.0
            noise = step * step / 12.0 / max(stats.mean_square, 1e-30)
            weight = site.call.args[1].value.numpy()
            w = weight if site.op == "conv2d" else weight.T
            wq, sw = weight_params(w, self.config.per_tensor)
            rec = wq.astype(np.float64) * sw.reshape((-1,) + (1,) * (w.ndim - 1))
            noise += float(((rec - w) ** 2).mean() / max((w.astype(np.float64) ** 2).mean(),
                                                        1e-30))
            scores.append((site.name, noise))
        return sorted(scores, key=lambda item: -item[1])

    def _fit_budget(self, prepared, ranges, mod, chosen):
        """Keep the most sensitive sites in fp32 until the accuracy loss fits the budget."""
        budget = self.config.accuracy_budget
        order = [name for name, _ in self.sensitivity(chosen)]
        keep_fp32 = 0
        while True:
            accuracy = self._measure(mod)
            self.budget_trials.append({"fp32_sites": order[:keep_fp32], "loss": accuracy.loss})
            self.say(f"[mcc] budget   {keep_fp32} op(s) in fp32: loss {accuracy.loss:.4g} "
                     f"(budget {budget:g})")
            if accuracy.loss <= budget:
                return mod
            if keep_fp32 == len(order):
                raise BudgetNotMet(f"--accuracy-budget {budget:g} cannot be met: even with every "
                               f"op in fp32 the loss is {accuracy.loss:.4g}")
            keep_fp32 = min(len(order), max(1, keep_fp32 * 2))
            if keep_fp32 == len(order):
                raise BudgetNotMet(f"--accuracy-budget {budget:g} cannot be met with any op in "
                               f"int8 (loss {accuracy.loss:.4g} with only "
                               f"'{order[-1]}' in int8)")
            for name in order[:keep_fp32]:
                self.fp32_sites[name] = "accuracy budget"
            mod = self._quantize(prepared, {k: v for k, v in ranges.items()
                                            if k not in order[:keep_fp32]})

    def _measure(self, mod) -> AccuracyReport:
        if not self.config.target.runs_on_host():
            raise MccError(f"--accuracy-budget needs to run the model, and a "
                           f"{self.config.target.name} module cannot run on this machine")
        # the budget is fitted on the calibration samples; the held-out ones stay unseen
        # until the final report
        executable = (self.build(mod) if self.build is not None else
                      compile_relax(mod, self.config.target, self.target,
                                    self.config.tuning_logs))
        return self.measure(executable, held_out=False)

    def measure(self, executable, held_out: bool = True) -> AccuracyReport:
        """Run ``executable`` on the held-out samples (if any and ``held_out``, else on the
        calibration samples); compare with the fp32 outputs on the same samples."""
        runner = vm_runner(executable, self._input_names())
        names = [t.name for t in self.imported.outputs]
        use_held = held_out and bool(self.held_out)
        feeds = self.held_out if use_held else self.samples
        reference = self.calibration.held_out_outputs if use_held else self.calibration.outputs
        quantized = [dict(zip(names, runner(feed))) for feed in feeds]
        self.accuracy = measure_accuracy(reference, quantized,
                                         "held-out" if use_held else "calibration")
        return self.accuracy

    def summary(self) -> str:
        if self.mode == "fp16":
            return f"fp16 mixed precision ({self.fp16_accumulation} accumulation)"
        n = len(self.report.quantized)
        total = len(self.sites)
        if self.mode == QDQ:
            return (f"already-quantized model: {n} of {total} conv2d/matmul ops in int8 with "
                    "the model's own scales")
        if self.calibration is None:
            return f"0 of {total} conv2d/matmul ops in int8: the module stays fp32"
        return (f"{n} of {total} conv2d/matmul ops in int8 "
                f"({self.config.calibration_method} calibration on "
                f"{len(self.calibration.outputs)} sample(s))")

    def to_json(self) -> dict:
        from mcc.schedule.rules.int8 import activation_dtype

        if self.mode == "fp16":
            return {"mode": "fp16", "accumulation": self.fp16_accumulation}
        fp32 = dict(self.report.skipped)
        fp32.update(self.fp32_sites)
        if self.mode == QDQ:
            return {"mode": QDQ, "activations": "the model's QuantizeLinear scales",
                    "int8_ops": self.report.quantized, "fp32_ops": fp32}
        return {
            "mode": "int8",
            "activations": f"{activation_dtype(self.target)} asymmetric, per tensor",
            "weights": "int8 symmetric, " + ("per tensor" if self.config.per_tensor
                                             else "per output channel"),
            "calibration": None if self.calibration is None else {
                "method": self.config.calibration_method, "data": self.config.calibration,
                "samples": len(self.calibration.outputs),
                "held_out_samples": len(self.held_out)},
            "int8_ops": self.report.quantized,
            "fp32_ops": fp32,
            "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
            "accuracy_budget": self.config.accuracy_budget,
        }


# conv2d in the int8 kernels' layout; conv2d_transpose stays in the one TVM lowers (and
# mcc.passes.conv_transpose_as_matmul takes): ConvertLayout would otherwise carry it to
# NHWC, which LegalizeOps leaves unlowered ("CodeGenVM cannot emit this Relax operator")
_PREPARED_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "OHWI"],
                     "relax.nn.conv2d_transpose": ["NCHW", "IOHW"]}


def load_calibration(imported, config, say) -> list[dict]:
    """The --calibration samples (``random``: seeded noise, said loudly); a one-line error
    without --calibration."""
    from mcc.driver.sample_data import load_samples, random_samples

    source = config.calibration
    if source is None:
        raise MccError("--quantize int8 needs calibration data: --calibration DATA (an .npz "
                       "keyed by input name, or a directory of .npz/.npy files); "
                       "--calibration random calibrates on noise, for speed tests only")
    if source == RANDOM:
        say("[mcc] WARNING: calibrating on seeded RANDOM inputs (--calibration random): "
            "int8 ranges and the accuracy report mean nothing for real data; "
            "use this for speed tests only")
        plan = imported.feed_plan
        return random_samples(imported.inputs, RANDOM_SAMPLES, seed=config.seed,
                              rules=plan.rules if plan is not None else None)
    return load_samples(source, imported.inputs)


def prepare(mod, target):
    """fp32 module in the form calibration and quantization work on."""
    from tvm import relax

    from mcc.passes import FoldBatchNorm
    from mcc.passes.layout import convert_conv_layout

    T = relax.transform
    # FoldConstant only folds inside dataflow blocks: in a model with control flow (an ONNX
    # If) a weight computed from constants (take + permute_dims of an LSTM's packed
    # weights) would otherwise stay a computation, and its matmul fp32
    before = [T.ConvertToDataflow(min_size=1), T.FoldConstant(), FoldBatchNorm(),
              T.DecomposeOpsForInference(),
              T.CanonicalizeBindings(), T.FoldConstant()]
    # one layout change per tensor, not per reader: sites that read one tensor then share
    # its quantized copy (mcc.passes.quantize)
    after = [T.FoldConstant(), T.EliminateCommonSubexpr(), T.ToNonDataflow()]
    with target:
        mod = _run_passes(before, mod)
        try:
            mod = convert_conv_layout(mod, _PREPARED_LAYOUTS)
        except Exception:  # noqa: BLE001 - an op TVM cannot infer a layout for (relax.stack
            pass  # of an unrolled LSTM): the convs stay NCHW, and in fp32
        return _run_passes(after, mod)


def _run_passes(passes, mod):
    """Each pass in turn; a failure is one line naming the pass (as the fp32 pipeline's)."""
    from mcc.build.pipeline import graph_pass_error

    for graph_pass in passes:
        try:
            mod = graph_pass(mod)
        except Exception as err:  # noqa: BLE001 - TVM's reasons are assertions and C++ errors
            raise graph_pass_error(graph_pass.info.name, err, mod) from None
    return mod


def compile_relax(mod, preset, target, tuning_logs=()):
    """Graph passes, schedules and build: what the driver does, for calibration runs and
    budget trials."""
    from tvm import relax

    from mcc.build.lower import lower_and_build

    mod = relax.transform.ConvertToDataflow(min_size=1)(mod)
    return lower_and_build(mod, preset, target, tuning_logs=tuning_logs).executable
