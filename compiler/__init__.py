"""mcc: compile ONNX and PyTorch models into verified, deployable TVM modules.

    import mcc
    compiled = mcc.compile("model.onnx", input_shapes={"input": (1, 3, 224, 224)})
    compiled.export("model.so")
    outputs = mcc.load("model.so").run({"input": x})

Heavy dependencies (TVM, ONNX, torch) are imported only when a verb needs them.
"""

from __future__ import annotations

from mcc.errors import MccError
from mcc.runtime.threads import default_thread_count

default_thread_count()  # before TVM's thread pool exists: all physical cores, not half of them

__version__ = "0.1.0"
__all__ = ["MccError", "__version__", "bench", "bundle", "compile", "list_targets", "load",
           "merge_tuning_logs", "profile", "tune"]


def compile(model, target=None, input_shapes=None, example_inputs=None, tuning_logs=(),
            verify=True, rtol=None, atol=None, calibration=None, prune=None,
            prune_criterion="l1", layout="auto", quantize=None, calibration_method="minmax",
            per_tensor=False, exclude=(), accuracy_budget=None, progress=None,
            cross_compiler=None, holdout=None, winograd=True, verify_inputs=None, bind=None,
            precision="fp32"):
    """Compile ``model`` (a path, an ``onnx.ModelProto``, a ``torch.nn.Module`` with
    ``example_inputs`` or a ``torch.export.ExportedProgram``) for ``target`` (a preset
    name, a TVM target dict/JSON, or None for this machine's CPU).

    Returns a ``Compiled`` with ``.export(path)``, ``.run(feed)`` and ``.report``.
    ``bind`` ({input name: values}) freezes ONNX graph inputs to constants before import
    (shape operands such as reduce axes, TopK's k, Resize sizes); they are then no
    longer inputs of the module.
    ``calibration`` names sample inputs (an .npz keyed by input name, or a directory of them)
    for the passes that need real data. ``prune`` is ``"zero"`` (remove all-zero filters,
    lossless) or a ratio in (0, 1) (remove that share of each layer's lowest-norm filters by
    ``prune_criterion``, "l1" or "l2"; no fine-tuning). ``layout`` is the convolution data
    layout: "NCHW", "NHWC", "NCHWc" (blocked, CPU) or "auto" (fastest for the target).
    ``winograd`` computes 3x3 stride-1 NHWC convolutions on CPUs as Winograd F(4x4, 3x3)
    (mcc.passes.winograd; fewer multiplies, float32 error within the verify tolerances).
    ``quantize="int8"`` calibrates
    on the samples (``calibration_method``: minmax, percentile or entropy;
    ``calibration="random"`` only for speed tests) and compiles conv2d / matmul into int8
    kernels, except the ops or node names in ``exclude``; ``accuracy_budget`` keeps the most
    sensitive ops in fp32 until the loss (worst of 1 - cosine and 1 - top-1 agreement vs fp32)
    is at most that. ``holdout`` is the share of the samples kept out of calibration for the
    accuracy report (default: 20% when there are at least 10 samples, else none; 0: none).
    ``quantize="fp16"`` is mixed precision for GPUs. ``cross_compiler``
    overrides the C++ compiler that links a module for another architecture (e.g.
    ``aarch64-linux-gnu-g++`` for ARM presets). ``progress`` is an optional callable
    receiving one line per stage. ``verify_inputs`` (an .npz keyed by input name) is the
    feed the module is verified on instead of synthetic inputs (default: the first
    ``calibration`` sample when there are samples). ``precision="bf16"`` runs conv2d and
    constant-weight matmuls as bf16 kernels (AVX-512 BF16 CPUs; mcc.passes.bf16), verified
    by cosine similarity >= 0.999 per output.
    """
    from mcc.driver import compile_model

    config = compile_config(target, input_shapes, tuning_logs, verify, rtol, atol, calibration,
                            prune, prune_criterion, layout, quantize, calibration_method,
                            per_tensor, exclude, accuracy_budget, cross_compiler, holdout,
                            winograd, verify_inputs, bind=bind, precision=precision)
    return compile_model(model, config, example_inputs=example_inputs, progress=progress)


def compile_config(target=None, input_shapes=None, tuning_logs=(), verify=True, rtol=None,
                   atol=None, calibration=None, prune=None, prune_criterion="l1",
                   layout="auto", quantize=None, calibration_method="minmax",
                   per_tensor=False, exclude=(), accuracy_budget=None, cross_compiler=None,
                   holdout=None, winograd=True, verify_inputs=None, bind=None,
                   precision="fp32"):
    """The checked ``CompileConfig`` for :func:`compile`'s options (shared with
    :func:`tune`, which tunes the kernels a compile with the same options builds)."""
    from mcc.driver.bind import check_bind
    from mcc.driver.config import DEFAULT_ATOL, DEFAULT_RTOL, CompileConfig
    from mcc.driver.pruning import check_criterion, parse_prune
    from mcc.targets import resolve_target

    if quantize != "int8" and (exclude or per_tensor or accuracy_budget is not None
                               or calibration_method != "minmax" or holdout is not None):
        raise MccError("--calibration-method, --per-tensor, --exclude, --accuracy-budget and "
                       "--holdout apply to --quantize int8 only")
    if verify_inputs is not None and not verify:
        raise MccError("--verify-inputs and --no-verify contradict each other")
    from mcc.driver.input_checks import check_tuning_logs

    check_tuning_logs(tuning_logs)
    preset = resolve_target(target).with_cross_compiler(cross_compiler)
    if precision != "fp32":  # --precision bf16: an AVX-512 BF16 CPU, no --quantize
        from mcc.schedule.rules.bf16 import check_precision

        check_precision(precision, quantize, preset)

    return CompileConfig(
        target=preset,
        input_shapes={k: tuple(v) for k, v in (input_shapes or {}).items()},
        tuning_logs=tuple(str(d) for d in tuning_logs),
        verify=verify,
        rtol=DEFAULT_RTOL if rtol is None else rtol,
        atol=DEFAULT_ATOL if atol is None else atol,
        calibration=None if calibration is None else str(calibration),
        prune=parse_prune(prune),
        prune_criterion=check_criterion(prune_criterion),
        layout=layout,
        winograd=winograd,
        quantize=quantize,
        calibration_method=calibration_method,
        per_tensor=per_tensor,
        exclude=tuple(exclude),
        accuracy_budget=accuracy_budget,
        holdout=holdout,
        bind=check_bind(bind),
        verify_inputs=None if verify_inputs is None else str(verify_inputs),
        precision=precision,
    )


def load(path):
    """Load a compiled ``.so``; returns a Module with ``inputs``, ``outputs``, ``run(feed)``."""
    from mcc.runtime import load as _load

    return _load(path)


def profile(module, inputs=None, rounds=20):
    """Per-kernel times of a compiled module (a path or a loaded Module) on ``inputs``
    (input name -> array; default: seeded random inputs that respect the model's integer
    input ranges). Returns an ``mcc.runtime.profile.Profile``, slowest kernel first."""
    from mcc.frontends.feeds import module_rules
    from mcc.runtime import Module
    from mcc.runtime.profile import profile_module
    from mcc.runtime.tensors import random_inputs

    module = module if isinstance(module, Module) else load(module)
    if inputs is None:
        inputs = random_inputs(module.inputs, seed=0, rules=module_rules(module.metadata))
    return profile_module(module, inputs, rounds=rounds)


def bench(model, **kwargs):
    """Time batch-1 latency of ``model`` (compiled here, or a ``.so``) against the reference."""
    from mcc.verify.benchmark import bench as _bench

    return _bench(model, **kwargs)


def bundle(module_path, out_dir, cross_compiler=None, force=False, progress=None):
    """``mcc package``: a deploy bundle for a compiled ``.so`` in ``out_dir``: the module,
    the TVM runtime libraries and the C++ runner for its architecture, and a README."""
    from mcc.deploy import bundle as _bundle

    return _bundle(module_path, out_dir, cross_compiler=cross_compiler, force=force,
                   progress=progress)


def list_targets():
    """(name, description) of each target preset."""
    from mcc.targets import describe_presets

    return describe_presets()


def tune(model, target=None, trials=None, time_budget=None, tuning_log="tuning_logs",
         input_shapes=None, example_inputs=None, rpc_tracker=None, rpc_key=None, search=None,
         progress=None, **compile_options):
    """Auto-tune ``model`` for ``target`` with MetaSchedule; records go to ``tuning_log``.

    ``trials`` (new measurements) or ``time_budget`` (minutes, everything included)
    bound the run; running again resumes from the log. ``compile_options`` are
    :func:`compile`'s options that change the kernels (``layout``, ``prune``,
    ``prune_criterion``, ``quantize``, ``calibration``, ...): a compile with the same
    options applies the records. ``rpc_tracker="HOST:PORT"`` with ``rpc_key`` measures on
    devices registered with a TVM RPC tracker. Returns a ``TuneReport``; Ctrl-C stops at
    the next safe point and raises ``mcc.tuning.search.TuneInterrupted`` (a
    KeyboardInterrupt) saying what was kept.
    """
    from mcc.tuning import tune_model

    config = compile_config(target, input_shapes, verify=False, **compile_options)
    return tune_model(model, config, trials=trials, time_budget=time_budget,
                      tuning_log=tuning_log, example_inputs=example_inputs,
                      rpc_tracker=rpc_tracker, rpc_key=rpc_key, search=search,
                      progress=progress)


def merge_tuning_logs(inputs, output):
    """Merge tuning logs from several machines, keeping the best record per workload and
    target. Returns a ``MergeReport``."""
    from mcc.tuning.log import merge_logs

    return merge_logs(inputs, output)
