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
__all__ = ["MccError", "__version__", "bench", "compile", "list_targets", "load"]


def compile(model, target=None, input_shapes=None, example_inputs=None, tuning_logs=(),
            verify=True, rtol=None, atol=None, calibration=None, quantize=None,
            calibration_method="minmax", per_tensor=False, exclude=(), accuracy_budget=None,
            progress=None):
    """Compile ``model`` (a path, an ``onnx.ModelProto``, a ``torch.nn.Module`` with
    ``example_inputs`` or a ``torch.export.ExportedProgram``) for ``target`` (a preset
    name, a TVM target dict/JSON, or None for this machine's CPU).

    Returns a ``Compiled`` with ``.export(path)``, ``.run(feed)`` and ``.report``.
    ``calibration`` names sample inputs (an .npz keyed by input name, or a directory of them)
    for the passes that need real data. ``quantize="int8"`` calibrates on it
    (``calibration_method``: minmax, percentile or entropy; ``calibration="random"`` only for
    speed tests) and compiles conv2d / matmul into int8 kernels, except the ops or node names
    in ``exclude``; ``accuracy_budget`` keeps the most sensitive ops in fp32 until the loss
    (worst of 1 - cosine and 1 - top-1 agreement vs fp32) is at most that.
    ``quantize="fp16"`` is mixed precision for GPUs. ``progress`` is an optional callable
    receiving one line per stage.
    """
    from mcc.config import DEFAULT_ATOL, DEFAULT_RTOL, CompileConfig
    from mcc.driver import compile_model
    from mcc.targets import resolve_target

    if quantize != "int8" and (exclude or per_tensor or accuracy_budget is not None
                               or calibration_method != "minmax"):
        raise MccError("--calibration-method, --per-tensor, --exclude and --accuracy-budget "
                       "apply to --quantize int8 only")

    config = CompileConfig(
        target=resolve_target(target),
        input_shapes={k: tuple(v) for k, v in (input_shapes or {}).items()},
        tuning_logs=tuple(str(d) for d in tuning_logs),
        verify=verify,
        rtol=DEFAULT_RTOL if rtol is None else rtol,
        atol=DEFAULT_ATOL if atol is None else atol,
        calibration=None if calibration is None else str(calibration),
        quantize=quantize,
        calibration_method=calibration_method,
        per_tensor=per_tensor,
        exclude=tuple(exclude),
        accuracy_budget=accuracy_budget,
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
