"""The compile driver: named steps over one CompileConfig.

    import   model -> Relax (weights as constants), plus a reference runner
    prune    (--prune) remove zero / lowest-norm channels (mcc.driver.pruning)
    quantize calibrate on sample data, conv2d/matmul -> int8 kernels (mcc.driver.quantization)
    passes   graph optimisation pipeline (mcc.build.pipeline); --layout auto on this CPU builds
             each candidate layout through build and keeps the fastest (mcc.driver.layout_choice)
    schedule tuning records, then default rules (mcc.schedule)
    build    TVM lowering and code generation
    export   one .so with weights and metadata, in a private temp dir
    verify   load that .so like a user would (another CPU: under qemu); compare with the reference

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
    import tvm

    from mcc import __version__
    from mcc.build.export import export_module
    from mcc.build.toolchain import check_toolchain
    from mcc.frontends import import_model
    from mcc.runtime.metadata import METADATA_FORMAT

    stages = Stages(progress)
    check_toolchain(config.target)  # a missing cross compiler / nvcc fails before any work
    target = config.target.tvm_target()

    # import: the model as a Relax module plus a reference runner
    with stages.stage("import") as st:
        imported = import_model(model, config.input_shapes, example_inputs, config.bind)
        st.detail = ", ".join(f"{t.name}: {t.dtype}{t.shape_text()}" for t in imported.inputs)
        from mcc.driver.input_checks import check_input_specs

        check_input_specs(imported.inputs)  # 0-size or unallocatable inputs: before any work

    # the verification feed: the user's (--verify-inputs, or the first --calibration
    # sample), read now so that a bad file fails before the build; else synthetic inputs
    # shaped by how the model uses them (mcc.frontends.feeds)
    rules = imported.feed_plan.rules if imported.feed_plan is not None else None
    user_feed, feed_source = _user_feed(config, imported.inputs)

    # prune, quantize: once; the graph steps before any layout is chosen
    mod, pruned, quantizer = prepare(imported, config, target, stages)

    # passes, schedule, build; --layout auto on this CPU: per candidate layout, fastest kept
    from mcc.build.lower import lower_and_build
    from mcc.driver.layout_choice import choose_layout, layouts_to_measure

    def lower_layout(auto_choice=None):
        return lower_and_build(mod, config.target, target, layout=config.layout,
                               auto_choice=auto_choice, winograd=config.winograd,
                               bf16=config.precision == "bf16",
                               tuning_logs=config.tuning_logs, say=stages.say,
                               stage=stages.stage)

    layout_choice, candidates = None, layouts_to_measure(mod, config)
    if candidates:
        feed = random_inputs(imported.inputs, seed=config.seed, rules=rules)
        lowered, layout_choice = choose_layout(candidates, lower_layout, feed,
                                               [t.name for t in imported.inputs], stages.say)
        stages.say(f"[mcc] layout   {layout_choice.summary()}")
    else:
        lowered = lower_layout()
    executable, passes, coverage = lowered.executable, lowered.passes, lowered.coverage
    prune_info = pruned.to_json() if pruned else None

    metadata = {
        "format": METADATA_FORMAT,
        "mcc_version": __version__,
        "tvm_version": tvm.__version__,
        "target": config.target.to_json(),
        "inputs": [t.to_json() for t in imported.inputs],
        "outputs": [t.to_json() for t in imported.outputs],
        "passes": (["mcc.PruneChannels"] if pruned else []) + passes,
        "schedule": coverage.to_json(),
        "source": imported.source,
        "reference": imported.reference_name,
    }
    if rules:  # value ranges of the integer inputs: run / bench / drift draw in range too
        from mcc.frontends.feeds import rules_to_json

        metadata["feeds"] = rules_to_json(rules)
    if prune_info:
        metadata["prune"] = prune_info
    if layout_choice:
        metadata["layout_choice"] = layout_choice.to_json()
    if config.precision != "fp32":
        metadata["precision"] = lowered.precision

    # accuracy: the quantized module against fp32 on the calibration samples
    if quantizer is not None:
        if quantizer.calibration is not None and config.target.runs_on_host():
            with stages.stage("accuracy") as st:
                st.detail = quantizer.measure(executable).summary()
            for line in quantizer.accuracy.lines():
                stages.say(line)
        metadata["quantization"] = quantizer.to_json()

    # export: the one-file deliverable, into a private temp dir
    from mcc.build.leftovers import pid_prefix

    workdir = tempfile.TemporaryDirectory(prefix=f"mcc-build-{pid_prefix()}")
    so_path = Path(workdir.name) / "module.so"
    with stages.stage("export") as st:
        export_module(executable, so_path, metadata, config.target)
        st.detail = f"{so_path.stat().st_size / 1e6:.1f} MB"

    # drift: a ratio prune moves outputs by design: record how far (metadata, re-export);
    # verification then compares with the model whose removed filters are zeroed
    reference, reference_name = imported.reference, imported.reference_name
    if pruned and pruned.mode == "ratio" and config.target.runs_on_host():
        from mcc.driver.pruning import ratio_drift_and_reference

        with stages.stage("drift") as st:
            reference, reference_name, st.detail = ratio_drift_and_reference(
                model, config, imported, executable, so_path, metadata)
    elif pruned and pruned.mode == "ratio":
        reference = None  # outputs moved by design; the zeroed-filter check runs on this CPU only

    report = {"stages": stages.to_json(), "schedule": coverage.to_json()}
    if prune_info:
        report["prune"] = prune_info
    if layout_choice:
        report["layout_choice"] = layout_choice.to_json()
    if quantizer is not None:
        report["quantization"] = metadata["quantization"]
    if "precision" in metadata:
        report["precision"] = metadata["precision"]
    compiled = Compiled(workdir, so_path, metadata, imported.reference, imported.reference_name,
                        report)

    # verify: run the exported module and the reference on the same seeded inputs
    # (a module for another CPU runs under emulation where that is installed)
    run_module, how = compiled.run, ""
    if config.verify and not config.target.runs_on_host():
        run_module, how = _emulated(config.target, so_path, compiled, stages)
    if not config.verify:
        stages.say("[mcc] verify   skipped (--no-verify)")
    elif reference is None:
        stages.say("[mcc] verify   skipped: no reference for this --prune RATIO module (the "
                   "zeroed-filter check needs an ONNX model and a module for this CPU)")
    elif run_module is None:
        stages.say(f"[mcc] verify   skipped: a {config.target.name} module cannot run here "
                   f"({how})")
    else:
        from mcc.errors import ReferenceUnavailable
        from mcc.verify.compare import verify

        try:
            with stages.stage("verify") as st:
                feed = (user_feed if user_feed is not None
                        else random_inputs(compiled.inputs, seed=config.seed, rules=rules))
                expected = _run_reference(reference, reference_name, feed, imported,
                                          feed_source)
                actual = run_module(feed)
                result = verify(actual, expected, reference_name,
                                config.rtol, config.atol)
                st.detail = result.summary() + how + (f" on {feed_source}" if feed_source
                                                      else "")
                if quantizer is not None:  # reduced precision: the accuracy report is the check
                    worst = max((o.max_abs for o in result.outputs), default=0.0)
                    st.detail = (f"vs {reference_name}: max abs err {worst:.3g} "
                                 f"({quantizer.mode}: tolerances not enforced){how}")
                if config.precision == "bf16":  # per-output cosine >= 0.999 is the check
                    from mcc.verify.compare import cosine_check

                    result = cosine_check(result, actual, expected)
                    st.detail = result.summary() + how
        except ReferenceUnavailable as err:
            stages.say(f"[mcc] verify   skipped: {err}")
            report["verify"] = {"skipped": str(err)}
            return compiled
        report["verify"] = result.to_json()
        report["stages"] = stages.to_json()
        if not result.ok and quantizer is None:
            raise MccError(result.failure())
    return compiled


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
