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
__all__ = ["MccError", "__version__", "bench", "bundle", "compare", "compile", "list_targets",
           "load",
           "merge_tuning_logs", "profile", "tune"]


def compile(model, target=None, input_shapes=None, example_inputs=None, progress=None,
            **options):
    """Compile ``model`` (a path, an ``onnx.ModelProto``, a ``torch.nn.Module`` with
    ``example_inputs`` or a ``torch.export.ExportedProgram``) for ``target`` (a preset
    name, a TVM target dict/JSON, or None for this machine's CPU).

    Returns a ``Compiled`` with ``.export(path)``, ``.run(feed)`` and ``.report``.
    ``input_shapes`` ({input name: shape}) fixes input shapes; ``progress`` is an optional
    callable receiving one line per stage. ``options`` are the fields of
    ``mcc.driver.config.CompileConfig``, the one list of compile options (its docstring and
    ``mcc compile --help`` describe each; None means the default), e.g. ``verify=False``,
    ``rtol``/``atol``, ``calibration`` (sample inputs), ``prune`` ("zero" or a ratio),
    ``layout``, ``quantize`` ("int8", "fp16"), ``precision`` ("bf16", "fp16", "int8",
    "auto"), ``bind`` ({input name: values}, ONNX inputs frozen to constants),
    ``cross_compiler``.
    An unknown keyword is a TypeError (``mcc.driver.config.UnknownOption``, an MccError).
    """
    from mcc.driver import compile_model
    from mcc.driver.config import check_names

    check_names(options, "mcc.compile")
    config = compile_config(target, input_shapes, **options)
    return compile_model(model, config, example_inputs=example_inputs, progress=progress)


def compile_config(target=None, input_shapes=None, **options):
    """The checked ``CompileConfig`` for :func:`compile`'s options (shared with
    :func:`tune`, which tunes the kernels a compile with the same options builds)."""
    from mcc.driver.config import make_config

    return make_config(target=target, input_shapes=input_shapes, **options)


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


def compare(model, inputs=None, reference="ort", reference_model=None, layers=(),
            threshold=None, target=None, input_shapes=None, progress=None, **options):
    """Which layer loses accuracy: ``model`` (an ONNX path) built with ``options`` (as for
    :func:`compile`: ``quantize="int8"``, ``precision="bf16"``, ``layout``, ...) against
    ONNX Runtime fp32 (``reference="ort"``) or mcc's fp32 build (``"fp32"``), tensor by
    tensor; a ``.so`` compares its outputs only, against ``reference_model`` (default: the
    model it was built from). ``inputs``: {name: array}, an .npz path, or None (seeded
    random). ``layers``: op types / node / tensor names to compare (default: all).
    ``threshold``: the relative error that counts as a loss (default 1e-3).
    Returns an ``mcc.verify.layers.CompareReport`` (``.layers``, ``.culprit``,
    ``.to_json()``, ``.lines()``)."""
    from mcc.driver.config import check_names
    from mcc.verify.compare_layers import compare as _compare
    from mcc.verify.layers import DEFAULT_THRESHOLD

    check_names(options, "mcc.compare")
    return _compare(model, inputs=inputs, reference=reference, reference_model=reference_model,
                    layers=layers, target=target,
                    threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                    input_shapes=input_shapes, progress=progress, **options)


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
    from mcc.driver.config import check_names
    from mcc.tuning import tune_model

    check_names(compile_options, "mcc.tune")
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
