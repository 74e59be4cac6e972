"""The compile driver: named steps over one CompileConfig.

    import   model -> Relax (weights as constants), plus a reference runner
    prune    (--prune) remove zero / lowest-norm channels (mcc.driver.pruning)
    quantize calibrate on sample data, conv2d/matmul -> int8 kernels (mcc.driver.quantization)
    passes   graph optimisation pipeline (mcc.build.pipeline); --layout auto on this CPU builds
             each candidate layout through build and keeps the fastest (mcc.driver.layout_choice)
             --precision auto builds fp32, bf16 and int8 through build, measures them against
             fp32 and keeps the fastest within the budget (mcc.driver.precision_choice)
    schedule tuning records, then default rules (mcc.schedule)
    build    TVM lowering and code generation
    export   one .so with weights and metadata, in a private temp dir
    verify   load that .so like a user would (another CPU: under qemu); compare with the reference

Each step returns a small result; mcc.driver.results.Results collects them and builds the
module's metadata and the report, each in one place.

``Compiled.export(path)`` then copies the verified file into place atomically,
so what a user receives is exactly what was checked.

The driver is the top of ``mcc compile``: it may import every stage (frontends,
mcc.passes, schedule, build, runtime, verify, mcc.targets); no stage imports it except
``mcc tune`` (mcc.tuning runs the same graph steps) and the API verbs in ``mcc``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from mcc.driver.config import CompileConfig
from mcc.driver.progress import Stages
from mcc.errors import MccError
from mcc.runtime.tensors import TensorSpec, random_inputs


class Compiled:
    """The result of :func:`mcc.compile`: ``export(path)``, ``run(feed)``, ``report``."""

    def __init__(self, workdir, so_path: Path, metadata: dict, reference, reference_name: str,
                 report: dict):
        self._workdir = workdir  # keeps the temp dir (and the built .so) alive
        self._so_path = so_path
        self.metadata = metadata
        self.inputs = [TensorSpec.from_json(t) for t in metadata["inputs"]]
        self.outputs = [TensorSpec.from_json(t) for t in metadata["outputs"]]
        self.reference = reference
        self.reference_name = reference_name
        self.report = report
        self._module = None

    @property
    def module(self):
        """The built module loaded in this process (only where the target runs here)."""
        if self._module is None:
            from mcc.runtime import load

            self._module = load(self._so_path)
        return self._module

    def run(self, feed: dict) -> dict[str, np.ndarray]:
        return self.module.run(feed)

    def export(self, path: str | Path) -> Path:
        """Write the module to ``path`` (atomically: a failure leaves no file)."""
        from mcc.build.export import copy_atomic

        return copy_atomic(self._so_path, path)


def compile_model(model, config: CompileConfig, example_inputs=None, progress=None) -> Compiled:
    """The steps of a compile; each returns a small result, collected in
    mcc.driver.results.Results, from which the metadata and the report are built."""
    from mcc.build.toolchain import check_toolchain
    from mcc.driver.results import Results
    from mcc.frontends import import_model

    stages = Stages(progress)
    check_toolchain(config.target)  # a missing cross compiler / nvcc fails before any work
    target = config.target.tvm_target()

    # import: the model as a Relax module plus a reference runner (--bind: constants)
    with stages.stage("import") as st:
        imported = import_model(model, config.input_shapes, example_inputs, config.bind)
        st.detail = ", ".join(f"{t.name}: {t.dtype}{t.shape_text()}" for t in imported.inputs)
        from mcc.driver.input_checks import check_input_specs

        check_input_specs(imported.inputs)  # 0-size or unallocatable inputs: before any work

    # the verification feed: the user's (--verify-inputs, or the first --calibration
    # sample), read now so that a bad file fails before the build; else synthetic inputs
    # shaped by how the model uses them (mcc.frontends.feeds)
    user_feed, feed_source = _user_feed(config, imported.inputs)

    if config.precision == "auto":
        from mcc.passes.quantize import has_qdq

        if has_qdq(imported.mod):  # its own int8 scales: nothing for auto to choose
            raise MccError("--precision auto: this model is already quantized (QDQ / QLinear "
                           "ops); compile it without --precision")

    # prune, quantize: once; the graph steps before any layout is chosen
    mod, pruned, quantizer = prepare(imported, config, target, stages)
    choice = None
    if config.precision == "auto":  # each precision built, measured, timed; fastest in budget
        from mcc.driver.precision_choice import choose_precision

        choice = choose_precision(
            mod, imported, config, target, stages,
            lambda m, cfg, sub: _lower(m, imported, cfg, target, sub))
        lowered, layout_choice = choice.chosen.lowered, choice.chosen.layout_choice
        quantizer = choice.chosen.quantizer
    else:
        lowered, layout_choice = _lower(mod, imported, config, target, stages)
    results = Results(config, imported, lowered, pruned=pruned, layout_choice=layout_choice,
                      precision_choice=choice)
    if choice is not None and quantizer is not None:  # measured already, vs the fp32 module
        results.quantization = quantizer.to_json()
    elif quantizer is not None:
        results.quantization = _accuracy(quantizer, lowered.executable, config, stages)

    # export: the one-file deliverable, into a private temp dir
    from mcc.build.export import export_module
    from mcc.build.leftovers import pid_prefix

    workdir = tempfile.TemporaryDirectory(prefix=f"mcc-build-{pid_prefix()}")
    so_path = Path(workdir.name) / "module.so"
    with stages.stage("export") as st:
        export_module(lowered.executable, so_path, results.metadata(), config.target)
        st.detail = f"{so_path.stat().st_size / 1e6:.1f} MB"

    # drift: a ratio prune moves outputs by design: record how far (metadata, re-export);
    # verification then compares with the model whose removed filters are zeroed
    reference, reference_name = imported.reference, imported.reference_name
    if pruned and pruned.mode == "ratio" and config.target.runs_on_host():
        from mcc.driver.pruning import ratio_drift_and_reference

        with stages.stage("drift") as st:
            results.drift, reference, reference_name, st.detail = ratio_drift_and_reference(
                model, config, imported, so_path, pruned.to_json()["layers"])
            export_module(lowered.executable, so_path, results.metadata(), config.target)
    elif pruned and pruned.mode == "ratio":
        reference = None  # outputs moved by design; the zeroed-filter check runs on this CPU only

    compiled = Compiled(workdir, so_path, results.metadata(), imported.reference,
                        imported.reference_name, report={})
    results.verify = _verify(compiled, reference, reference_name, user_feed, feed_source,
                             results, stages)
    compiled.report = results.report(stages)
    return compiled


def _lower(mod, imported, config: CompileConfig, target, stages: Stages):
    """Passes, schedule, build: (Lowered, LayoutChoice or None). ``--layout auto`` on this
    CPU builds each candidate layout and keeps the fastest."""
    from mcc.build.lower import lower_and_build
    from mcc.driver.layout_choice import choose_layout, layouts_to_measure

    def lower_layout(auto_choice=None):
        return lower_and_build(mod, config.target, target, layout=config.layout,
                               auto_choice=auto_choice, winograd=config.winograd,
                               bf16=config.precision == "bf16",
                               tuning_logs=config.tuning_logs, say=stages.say,
                               stage=stages.stage)

    candidates = layouts_to_measure(mod, config)
    if not candidates:
        return lower_layout(), None
    feed = random_inputs(imported.inputs, seed=config.seed, rules=_rules(imported))
    lowered, layout_choice = choose_layout(candidates, lower_layout, feed,
                                           [t.name for t in imported.inputs], stages.say)
    stages.say(f"[mcc] layout   {layout_choice.summary()}")
    return lowered, layout_choice


def _accuracy(quantizer, executable, config: CompileConfig, stages: Stages) -> dict:
    """The quantization's JSON, with the quantized module's accuracy against fp32 on the
    calibration samples where it runs here."""
    if quantizer.calibration is not None and config.target.runs_on_host():
        with stages.stage("accuracy") as st:
            st.detail = quantizer.measure(executable).summary()
        for line in quantizer.accuracy.lines():
            stages.say(line)
    return quantizer.to_json()


def _verify(compiled: Compiled, reference, reference_name: str, user_feed, feed_source,
            results, stages: Stages) -> dict | None:
    """Run the exported module and the reference on the same inputs (a module for another
    CPU under emulation where that is installed): the verification's JSON, or None when it
    was skipped for a reason the progress lines give. A mismatch is an MccError (for bf16
    and fp16: a cosine under 0.999), except for an int8 module, whose accuracy report is
    the check."""
    config, imported = results.config, results.imported
    quantized = results.quantization is not None
    fp16 = quantized and results.quantization["mode"] == "fp16"  # cosine, as bf16
    run_module, how = compiled.run, ""
    if config.verify and not config.target.runs_on_host():
        run_module, how = _emulated(config.target, compiled._so_path, compiled, stages)
    if not config.verify:
        stages.say("[mcc] verify   skipped (--no-verify)")
        return None
    if reference is None:
        stages.say("[mcc] verify   skipped: no reference for this --prune RATIO module (the "
                   "zeroed-filter check needs an ONNX model and a module for this CPU)")
        return None
    if run_module is None:
        stages.say(f"[mcc] verify   skipped: a {config.target.name} module cannot run here "
                   f"({how})")
        return None
    from mcc.errors import ReferenceUnavailable
    from mcc.verify.compare import verify

    try:
        with stages.stage("verify") as st:
            feed = (user_feed if user_feed is not None
                    else random_inputs(compiled.inputs, seed=config.seed,
                                       rules=_rules(imported)))
            expected = _run_reference(reference, reference_name, feed, imported, feed_source)
            actual = run_module(feed)
            result = verify(actual, expected, reference_name, config.rtol, config.atol)
            st.detail = result.summary() + how + (f" on {feed_source}" if feed_source else "")
            if quantized and not fp16:  # int8: the accuracy report is the check
                worst = max((o.max_abs for o in result.outputs), default=0.0)
                st.detail = (f"vs {reference_name}: max abs err {worst:.3g} "
                             f"({results.quantization['mode']}: tolerances not enforced){how}")
            if fp16 or (results.lowered.precision or {}).get("mode") == "bf16":  # cosine >= 0.999
                from mcc.verify.compare import cosine_check

                result = cosine_check(result, actual, expected)
                st.detail = result.summary() + how
    except ReferenceUnavailable as err:
        stages.say(f"[mcc] verify   skipped: {err}")
        return {"skipped": str(err)}
    if not result.ok and (fp16 or not quantized):
        raise MccError(result.failure())
    return result.to_json()


def _rules(imported):
    """Value rules of the model's integer inputs (mcc.frontends.feeds), or None."""
    return imported.feed_plan.rules if imported.feed_plan is not None else None


def _user_feed(config: CompileConfig, inputs: list[TensorSpec]):
    """(feed, where it came from) of --verify-inputs or the first --calibration sample, or
    (None, None) for synthetic inputs."""
    if not config.verify:
        return None, None
    from mcc.driver.sample_data import load_samples, load_verify_feed

    if config.verify_inputs is not None:
        return load_verify_feed(config.verify_inputs, inputs), f"'{config.verify_inputs}'"
    if config.calibration is not None and config.calibration != "random":
        sample = load_samples(config.calibration, inputs, max_samples=1)[0]
        return sample, f"the first sample of '{config.calibration}'"
    return None, None


def _run_reference(reference, reference_name: str, feed: dict, imported, feed_source):
    """The reference's outputs on ``feed``; a feed it rejects is a one-line user error."""
    try:
        return reference(feed)
    except MccError:  # ReferenceUnavailable (skips verification) included
        raise
    except Exception as err:  # the runtime refused these values (an index out of range, ...)
        from mcc.frontends.feeds import rejected_message

        raise MccError(rejected_message(err, reference_name, imported.feed_plan,
                                        imported.inputs, feed_source)) from None


def lower(imported, config: CompileConfig, target, stages: Stages):
    """The graph steps from an imported model to fused TIR kernels: (module, prune
    result, quantizer, pass names). ``mcc tune`` runs the same steps, so that it tunes
    exactly the kernels a compile with the same options builds (``--layout auto``: the
    table's first candidate, see mcc.driver.layout_choice)."""
    from mcc.build.lower import run_passes

    mod, pruned, quantizer = prepare(imported, config, target, stages)
    mod, passes = run_passes(mod, target, layout=config.layout, winograd=config.winograd,
                             bf16=config.precision == "bf16", say=stages.say,
                             stage=stages.stage)
    return mod, pruned, quantizer, passes


def prepare(imported, config: CompileConfig, target, stages: Stages):
    """Prune and quantize: (module, prune result, quantizer), before any layout is chosen."""
    # prune: physically remove channels before the pipeline sees the graph
    mod, pruned = imported.mod, None
    if config.prune is not None:
        from mcc.driver.pruning import prune_model

        with stages.stage("prune") as st:
            mod, pruned = prune_model(mod, config.prune, config.prune_criterion)
            st.detail = pruned.summary()

    # quantize: calibrate on sample data (or read an already-quantized model's scales),
    # then conv2d/matmul become int8 kernels
    from mcc.driver.quantization import Quantizer, wants_quantization

    quantizer = None
    if wants_quantization(config, mod):
        quantizer = Quantizer(dataclasses.replace(imported, mod=mod), config, target,
                              say=stages.say)
        with stages.stage("quantize") as st:
            mod = quantizer.run()
            st.detail = quantizer.summary()
    return mod, pruned, quantizer


def _emulated(target, so_path: Path, compiled: Compiled, stages: Stages):
    """(run, note) for a module of another CPU under emulation, or (None, why not)."""
    from mcc.verify.emulate import emulated_runner, why_not_emulated

    reason = why_not_emulated(target)
    if reason is not None:
        return None, f"{target.why_not_runnable()}; {reason}"
    try:
        run = emulated_runner(target, so_path, [t.name for t in compiled.outputs], stages.say)
    except MccError as err:  # e.g. the aarch64 TVM runtime cannot be fetched offline
        return None, f"{target.why_not_runnable()}; cannot emulate: {err}"
    return run, f" (under {target.emulator[0]})"
