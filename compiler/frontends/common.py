"""Pieces shared by the frontends: the import result and reading specs off Relax."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mcc.errors import first_line
from mcc.runtime.tensors import Dim, TensorSpec

Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ImportedModel:
    """A model in Relax form plus what is needed to check the compiled result against it."""

    mod: object  # tvm.IRModule with a "main" function; weights are bound constants
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: Reference  # runs the original model (ONNX Runtime / eager PyTorch)
    reference_name: str  # "onnxruntime" or "pytorch"
    source: dict = field(default_factory=dict)  # format, path, sha256: stored in metadata
    feed_plan: object = None  # mcc.frontends.feeds.FeedPlan: value rules for synthetic ints


def _dim(value) -> Dim:
    """A Relax shape entry as an int, or the name of its symbolic variable."""
    from tvm import tirx

    if isinstance(value, tirx.IntImm) or hasattr(value, "value"):
        return int(value.value)
    return str(value)


def tensor_specs_from_type(names: list[str], ty) -> list[TensorSpec]:
    """Specs for a Relax tensor type or tuple of them, named in order."""
    fields = list(ty.fields) if hasattr(ty, "fields") else [ty]
    if len(fields) != len(names):
        names = [f"output_{i}" for i in range(len(fields))]
    return [_spec(name, t) for name, t in zip(names, fields)]


def _spec(name: str, ty) -> TensorSpec:
    if not hasattr(ty, "dtype"):  # a shape value (ONNX Shape output): int64[ndim] at run time
        return TensorSpec(name, (max(int(getattr(ty, "ndim", -1)), 0),), "int64")
    if not hasattr(ty, "shape"):  # a scalar (Relax PrimValue): a 0-d array at run time
        return TensorSpec(name, (), str(ty.dtype))
    return TensorSpec(name, _shape(ty), str(ty.dtype))


def _shape(ty) -> tuple:
    """Dims of a tensor type; a shape only known at run time becomes "?" per axis."""
    if ty.shape is not None and hasattr(ty.shape, "values"):
        return tuple(_dim(d) for d in ty.shape.values)
    return ("?",) * max(int(ty.ndim), 0)


def relax_specs(mod, input_names: list[str], output_names: list[str]):
    """(inputs, outputs) specs from the signature of ``mod["main"]``."""
    func = mod["main"]
    inputs = [tensor_specs_from_type([name], p.ty)[0] for name, p in zip(input_names, func.params)]
    outputs = tensor_specs_from_type(output_names, func.ret_ty)
    return inputs, outputs


def native_stderr_silenced():
    """Swallow what TVM's C++ side prints to fd 2 (warnings while unwinding a failed
    import), so a user error stays one line."""
    from mcc.runtime.tvm_log import quiet_tvm

    return quiet_tvm(noise=("",))  # "" is in every line: all of them dropped


def call_quietly(fn, *args, **kwargs):
    """``(fn(...), None)`` or ``(None, first line of its error)``, with Python warnings and
    TVM's native stderr chatter suppressed, including what it prints while the failed
    call's objects are collected."""
    failure = None
    with warnings.catch_warnings(), native_stderr_silenced():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs), None
        except Exception as err:  # reported by the caller as a one-line MccError
            failure = first_line(err)
        gc.collect()
    return None, failure
