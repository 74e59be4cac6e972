"""PyTorch import through ``torch.export``: a saved ``.pt2`` program or an in-memory module.

Symbolic sizes from ``torch.export.Dim`` stay symbolic unless ``input_shapes``
fixes them; fixing binds the Relax function's symbolic variables.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from mcc.errors import MccError, first_line
from mcc.frontends.common import (
    ImportedModel,
    call_quietly,
    relax_specs,
)


def _torch():
    try:
        import torch
    except ImportError:
        raise MccError("PyTorch models need torch: pip install 'mcc[torch]' "
                       "(or pip install torch==2.13.0)") from None
    return torch


def import_torch(model, input_shapes: dict, example_inputs) -> ImportedModel:
    torch = _torch()
    program, eager, source = _exported_program(torch, model, example_inputs)
    input_names = list(program.graph_signature.user_inputs)
    output_names = list(program.graph_signature.user_outputs)
    for name in input_shapes:
        if name not in input_names:
            raise MccError(f"--input-shape names '{name}', but the program's inputs are: "
                           f"{', '.join(input_names)}")
    from tvm.relax.frontend.torch import from_exported_program

    mod, failure = call_quietly(from_exported_program, program, keep_params_as_input=False,
                                unwrap_unit_return_tuple=True)
    if mod is None:
        raise MccError(f"cannot import {source['path']}: {failure}")
    mod = _bind_input_shapes(mod, input_names, input_shapes)
    inputs, outputs = relax_specs(mod, input_names, output_names)
    return ImportedModel(mod, inputs, outputs, eager_reference(torch, eager, input_names,
                                                                [o.name for o in outputs]),
                         "pytorch", source)


def _exported_program(torch, model, example_inputs):
    """(ExportedProgram, eager callable, source metadata) for a path, module or program."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.load(str(path))
        except Exception as err:
            raise MccError(f"'{path}' is not a valid torch.export program (.pt2): "
                           f"{first_line(err)}") from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return program, program.module(), {"format": "pt2", "path": str(path), "sha256": digest}
    if isinstance(model, torch.export.ExportedProgram):
        return model, model.module(), {"format": "torch.export", "path": "<ExportedProgram>"}
    if isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise MccError("compiling a torch.nn.Module needs example_inputs "
                           "(a tuple of tensors with the shapes to compile for)")
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        model = model.eval()
        try:
            program = torch.export.export(model, tuple(example_inputs))
        except Exception as err:
            raise MccError(f"torch.export failed on {type(model).__name__}: "
                           f"{first_line(err)}") from None
        return program, model, {"format": "torch.nn.Module", "path": type(model).__name__}
    raise MccError(f"cannot import a {type(model).__name__} as a PyTorch model")


def _bind_input_shapes(mod, input_names, input_shapes):
    """Replace symbolic dims of the named inputs by the given sizes."""
    if not input_shapes:
        return mod
    func = mod["main"]
    binding = {}
    for name, param in zip(input_names, func.params):
        if name not in input_shapes:
            continue
        dims, wanted = list(param.ty.shape.values), input_shapes[name]
        if len(dims) != len(wanted):
            raise MccError(f"--input-shape {name} has rank {len(wanted)}, but input '{name}' "
                           f"has rank {len(dims)}")
        for axis, (dim, value) in enumerate(zip(dims, wanted)):
            if hasattr(dim, "value"):
                if int(dim.value) != value:
                    raise MccError(f"--input-shape {name}: axis {axis} is fixed to "
                                   f"{int(dim.value)} in the program, cannot set it to {value}")
            else:
                binding[dim] = value
    mod["main"] = func.bind_symbolic_vars(binding)
    return mod


def eager_reference(torch, eager, input_names, output_names):
    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feed[n])) for n in input_names]
        with torch.no_grad():
            result = eager(*args)
        flat = list(result) if isinstance(result, (tuple, list)) else [result]
        return {name: t.detach().numpy() for name, t in zip(output_names, flat)}

    return run
