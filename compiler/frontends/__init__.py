"""Model import: ONNX files or protos, and PyTorch (``.pt2`` or an in-memory module).

Each frontend returns an :class:`ImportedModel`: the Relax module with weights
bound as constants, the input and output descriptions, and a reference runner
(ONNX Runtime or eager PyTorch) that verification and benchmarks compare with.

Frontends may import mcc.runtime (tensor descriptions), mcc.passes and
mcc.errors only: nothing of the later stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcc.errors import MccError
from mcc.frontends.common import ImportedModel

__all__ = ["ImportedModel", "import_model"]


def import_model(model: Any, input_shapes: dict | None = None,
                 example_inputs: tuple | None = None, bind: dict | None = None) -> ImportedModel:
    """Dispatch on what ``model`` is: a path (.onnx / .pt2), an ONNX proto or a torch model.
    ``bind`` freezes ONNX graph inputs to constants (``--bind``, mcc.driver.bind)."""
    input_shapes = dict(input_shapes or {})
    is_onnx = isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".onnx" or \
        type(model).__module__.startswith("onnx")
    if bind and not is_onnx:
        raise MccError("--bind applies to ONNX models only")
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise MccError(f"model file '{path}' not found")
        if path.is_dir():
            raise MccError(f"'{path}' is a directory, not a model file")
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            from mcc.frontends.onnx_import import import_onnx

            return import_onnx(path, input_shapes, bind)
        if suffix == ".pt2":
            from mcc.frontends.torch_import import import_torch

            return import_torch(path, input_shapes, example_inputs)
        if suffix == ".so":
            raise MccError(f"'{path}' is already a compiled module; use `mcc run` or mcc.load()")
        raise MccError(f"cannot import '{path}': expected an ONNX file (.onnx) or a "
                       "torch.export program (.pt2)")
    if type(model).__module__.startswith("onnx"):
        from mcc.frontends.onnx_import import import_onnx

        return import_onnx(model, input_shapes, bind)
    if type(model).__module__.startswith("torch") or hasattr(model, "state_dict"):
        from mcc.frontends.torch_import import import_torch

        return import_torch(model, input_shapes, example_inputs)
    raise MccError(f"cannot import a {type(model).__name__}: pass a path, an onnx.ModelProto, "
                   "a torch.nn.Module (with example_inputs) or a torch.export.ExportedProgram")
