"""mcc: compile ONNX and PyTorch models into verified, deployable TVM modules.

    import mcc
    compiled = mcc.compile("model.onnx", input_shapes={"input": (1, 3, 224, 224)})
    compiled.export("model.so")
    outputs = mcc.load("model.so").run({"input": x})

Heavy dependencies (TVM, ONNX, torch) are imported only when a verb needs them.
"""

from __future__ import annotations

from mcc.errors import MccError

__version__ = "0.1.0"
__all__ = ["MccError", "__version__", "bench", "compile", "list_targets", "load",
           "merge_tuning_logs", "tune"]


def compile(model, target=None, input_shapes=None, example_inputs=None, tuning_logs=(),
            verify=True, rtol=None, atol=None, progress=None):
    """Compile ``model`` (a path, an ``onnx.ModelProto``, a ``torch.nn.Module`` with
    ``example_inputs`` or a ``torch.export.ExportedProgram``) for ``target`` (a preset
    name, a TVM target dict/JSON, or None for this machine's CPU).

    Returns a ``Compiled`` with ``.export(path)``, ``.run(feed)`` and ``.report``.
    ``progress`` is an optional callable receiving one line per stage.
    """
    from mcc.config import DEFAULT_ATOL, DEFAULT_RTOL, CompileConfig
    from mcc.driver import compile_model
    from mcc.targets import resolve_target

    config = CompileConfig(
        target=resolve_target(target),
        input_shapes={k: tuple(v) for k, v in (input_shapes or {}).items()},
        tuning_logs=tuple(str(d) for d in tuning_logs),
        verify=verify,
        rtol=DEFAULT_RTOL if rtol is None else rtol,
        atol=DEFAULT_ATOL if atol is None else atol,
    )
    return compile_model(model, config, example_inputs=example_inputs, progress=progress)


def load(path):
    """Load a compiled ``.so``; returns a Module with ``inputs``, ``outputs``, ``run(feed)``."""
    from mcc.runtime import load as _load

    return _load(path)


def bench(model, **kwargs):
    """Time batch-1 latency of ``model`` (compiled here, or a ``.so``) against the reference."""
    from mcc.benchmark import bench as _bench

    return _bench(model, **kwargs)


def list_targets():
    """(name, description) of each target preset."""
    from mcc.targets import describe_presets

    return describe_presets()


def tune(model, target=None, trials=None, time_budget=None, tuning_log="tuning_logs",
         input_shapes=None, example_inputs=None, rpc_tracker=None, rpc_key=None, search=None,
         progress=None):
    """Auto-tune ``model`` for ``target`` with MetaSchedule; records go to ``tuning_log``.

    ``trials`` (new measurements) or ``time_budget`` (minutes) bound the run; running
    again resumes from the log. ``rpc_tracker="HOST:PORT"`` with ``rpc_key`` measures on
    devices registered with a TVM RPC tracker. Returns a ``TuneReport``.
    """
    from mcc.targets import resolve_target
    from mcc.tuning import tune_model

    return tune_model(model, resolve_target(target), trials=trials, time_budget=time_budget,
                      tuning_log=tuning_log, input_shapes=input_shapes,
                      example_inputs=example_inputs, rpc_tracker=rpc_tracker, rpc_key=rpc_key,
                      search=search, progress=progress)


def merge_tuning_logs(inputs, output):
    """Merge tuning logs from several machines, keeping the best record per workload and
    target. Returns a ``MergeReport``."""
    from mcc.tuning_log import merge_logs

    return merge_logs(inputs, output)
