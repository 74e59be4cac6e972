"""Reference runners for a model file, without importing it into TVM (used by bench)."""

from __future__ import annotations

from pathlib import Path

from mcc.errors import MccError


def reference_for(path: str | Path, output_names: list[str]):
    """(runtime name, feed -> outputs callable) running the model file at ``path``."""
    path = Path(path)
    if not path.exists():
        raise MccError(f"reference model '{path}' not found")
    if path.suffix == ".onnx":
        from mcc.frontends.onnx_import import ort_reference

        return "onnxruntime", ort_reference(path.read_bytes(), output_names)
    if path.suffix == ".pt2":
        from mcc.frontends.torch_import import _torch, eager_reference

        torch = _torch()
        from mcc.frontends.safe_pt2 import load_exported_program

        program = load_exported_program(torch, path)
        return "pytorch", eager_reference(torch, program.module(),
                                          list(program.graph_signature.user_inputs),
                                          output_names)
    raise MccError(f"cannot use '{path}' as a reference: expected an .onnx or .pt2 file")
