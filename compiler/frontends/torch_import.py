"""PyTorch import through ``torch.export``: a saved ``.pt2`` program or an in-memory module.

Symbolic sizes from ``torch.export.Dim`` stay symbolic unless ``input_shapes``
fixes them; fixing binds the Relax function's symbolic variables.
"""

from __future__ import annotations

import hashlib
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
                                unwrap_unit_return_tuple=True,
                                custom_convert_map=_dtype_faithful_converters())
    if mod is None and (retry := _views_as_reshapes(torch, program)) is not None:
        mod, _ = call_quietly(from_exported_program, retry, keep_params_as_input=False,
                              unwrap_unit_return_tuple=True,
                              custom_convert_map=_dtype_faithful_converters())
    if mod is None:
        raise MccError(f"cannot import {source['path']}: {failure}")
    mod = _bind_input_shapes(mod, input_names, input_shapes)
    inputs, outputs = relax_specs(mod, input_names, output_names)
    return ImportedModel(mod, inputs, outputs, eager_reference(torch, eager, input_names,
                                                                [o.name for o in outputs]),
                         "pytorch", source)


def _views_as_reshapes(torch, program):
    """A copy of ``program`` whose ``aten.view`` calls are ``aten.reshape`` (None if it has
    none). torch's decompositions (which TVM's importer runs) can give an op's result other
    strides than export recorded, e.g. the math decomposition of
    scaled_dot_product_attention, and a later ``view`` of it then fails ("Cannot view a
    tensor with shape ... and strides ...": Hugging Face GPT-2's ``Conv1D`` after SDPA).
    In an inference graph a reshape computes the same values and copies when it must."""
    import copy

    view = torch.ops.aten.view.default
    if not any(n.op == "call_function" and n.target is view for n in program.graph.nodes):
        return None
    try:
        copied = copy.deepcopy(program)
    except Exception:  # a program that cannot be copied keeps its first failure
        return None
    for node in copied.graph.nodes:
        if node.op == "call_function" and node.target is view:
            node.target = torch.ops.aten.reshape.default
    copied.graph_module.recompile()
    return copied


def _dtype_faithful_converters() -> dict:
    """Converters for aten ops whose result dtype TVM's importer gets wrong.

    torch promotes a bool or integer ``cumsum``/``cumprod`` to int64 (``node.meta``
    records it); TVM's converters keep the input dtype, so a bool cumsum (the position
    ids of Hugging Face attention masks: ``(ids != pad).cumsum(-1)``) fails to build
    ("t.MatchesCode(kDLFloat)") and an int32 one overflows. These cast the input to the
    dtype torch computed first. Integer clamps get their own converter too."""
    from tvm import relax

    def scan(relax_op):
        def convert(node, importer):
            bb = importer.block_builder
            x = importer.env[node.args[0]]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            value = node.meta.get("val")
            want = str(x.ty.dtype)
            if value is not None and hasattr(value, "dtype"):
                want = importer._convert_data_type(value.dtype, importer.env)
            if str(x.ty.dtype) != want:
                x = bb.emit(relax.op.astype(x, want))
            return bb.emit(relax_op(x, dim))

        return convert

    def integer_clamp(method, bounds):
        """clamp/clamp_min/clamp_max of an integer tensor by Python numbers: TVM's converter
        clips with +-inf for a missing bound, which an integer constant cannot hold."""

        def convert(node, importer):
            x = importer.env[node.args[0]]
            dtype = str(x.ty.dtype)
            limits = [node.args[1 + i] if len(node.args) > 1 + i else node.kwargs.get(k)
                      for i, k in enumerate(bounds)]
            if not dtype.startswith(("int", "uint")) or not all(
                    isinstance(v, (int, type(None))) and not isinstance(v, bool)
                    for v in limits):
                return getattr(importer, method)(node)
            bb = importer.block_builder
            for kind, value in zip(bounds, limits):
                if value is not None:
                    fn = relax.op.maximum if kind == "min" else relax.op.minimum
                    x = bb.emit(fn(x, relax.const(value, dtype)))
            return x

        return convert

    return {"cumsum.default": scan(relax.op.cumsum), "cumprod.default": scan(relax.op.cumprod),
            "clamp.default": integer_clamp("_clamp", ("min", "max")),
            "clamp_min.default": integer_clamp("_clamp_min", ("min",)),
            "clamp_max.default": integer_clamp("_clamp_max", ("max",))}


def _exported_program(torch, model, example_inputs):
    """(ExportedProgram, eager callable, source metadata) for a path, module or program."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        from mcc.frontends.safe_pt2 import load_exported_program

        program = load_exported_program(torch, path)
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
