"""The ONNX backend API (``onnx.backend.base.Backend``) over mcc.

``MccBackend.prepare(model)`` runs mcc's own import (with its converter
extensions), graph pipeline, schedule and ``tvm.compile`` for this machine's
CPU, then keeps the module in a Relax VM in this process. It skips only the
``.so`` export and the ONNX Runtime verification of ``mcc compile``, so the
ONNX backend test suite measures what ``mcc compile`` can import and build
while running ~1,900 tiny models in reasonable time.

Shape operands fed as inputs. Some models pass what a compiler needs at build
time (reduce axes, TopK's k, Resize sizes, Pad pads, Slice starts) as graph
inputs. Where the plain compile fails and such inputs exist, the module is
compiled on first ``run`` with those inputs bound to the values given
(``import_onnx(..., constant_inputs=...)``, what a user of ``mcc.compile`` would
do), and recompiled if later values differ. ``rep.specialized`` says so.
"""

from __future__ import annotations

import numpy as np
from onnx.backend.base import Backend, BackendRep

from mcc.errors import MccError
from mcc.frontends.subbyte import from_storage, narrow_output_types
from mcc.runtime.tensors import to_storage

# Input positions of ops whose value decides shapes or axes, so TVM needs it constant.
SHAPE_OPERANDS: dict[str, set[int]] = {
    **{op: {1} for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                          "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                          "ReduceSumSquare", "TopK", "Upsample", "Split", "CumSum", "CumProd",
                          "Reshape", "Expand", "Tile", "Squeeze", "Unsqueeze",
                          "CenterCropPad", "AffineGrid", "SplitToSequence", "Trilu")},
    "Resize": {1, 2, 3},
    "OneHot": {1},
    "Pad": {1, 2, 3},
    "Slice": {1, 2, 3, 4},
    "ConstantOfShape": {0},
    "Range": {0, 1, 2},
    "NonMaxSuppression": {2, 3, 4},
    "Dropout": {1, 2},
    "Col2Im": {1, 2},
    "DFT": {2},
    **{op: {0} for op in ("HannWindow", "HammingWindow", "BlackmanWindow")},
}


def shape_operand_inputs(model) -> list[str]:
    """Graph inputs that feed a shape/axes operand of some node."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = {vi.name for vi in model.graph.input} - initializers
    found = []
    for node in model.graph.node:
        for index in SHAPE_OPERANDS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in inputs:
                if node.input[index] not in found:
                    found.append(node.input[index])
    return found


class MccBackendRep(BackendRep):
    """A compiled model: ``run(inputs)`` takes arrays in graph-input order."""

    def __init__(self, model, vm=None, constant_names: list[str] = ()):
        initializers = {init.name for init in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in initializers]
        self._model = model
        self._vm = vm
        self._constant_names = list(constant_names)
        self._constant_key = None
        self._single_output = len(model.graph.output) == 1
        self._output_dtypes = narrow_output_types(model)  # int4/int2 come back as int8/uint8
        self.specialized = bool(constant_names)

    def run(self, inputs, **kwargs):
        import tvm

        if isinstance(inputs, dict):
            inputs = [inputs[name] for name in self.input_names]
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        feed = dict(zip(self.input_names, inputs))
        if self._constant_names:
            self._compile_for(feed)
        device = tvm.cpu()
        args = [_to_tvm(tvm, feed[name], device) for name in self.input_names
                if name not in self._constant_names]
        result = self._vm["main"](*args)
        if self._single_output:
            result = [result]
        return [from_storage(_to_numpy(value), dtype)
                for value, dtype in zip(result, self._output_dtypes)]

    def _compile_for(self, feed):
        values = {name: np.asarray(feed[name]) for name in self._constant_names}
        key = tuple((v.dtype.str, v.shape, v.tobytes()) for v in values.values())
        if key != self._constant_key:
            self._vm = compile_in_process(self._model, values)
            self._constant_key = key


def _to_tvm(tvm, value, device):
    if isinstance(value, (list, tuple)):  # an ONNX sequence input
        return [_to_tvm(tvm, v, device) for v in value]
    array = to_storage(np.asarray(value))
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
        array = array.copy(order="C")
    return tvm.runtime.tensor(array, device)


def _to_numpy(value):
    """A VM result (tensor, shape tuple, tuple of them) as numpy / list of numpy."""
    if hasattr(value, "numpy"):
        return value.numpy()
    if isinstance(value, (int, np.integer)):
        return np.array(value, dtype=np.int64)
    items = list(value)
    if type(value).__name__ == "Shape" or items and all(isinstance(v, int) for v in items):
        return np.array([int(v) for v in items], dtype=np.int64)
    return [_to_numpy(v) for v in items]


def compile_in_process(model, constant_inputs: dict | None = None):
    """mcc's import + pipeline + schedule + build for this CPU; the Relax VM to run it."""
    import tvm
    from tvm import relax

    from mcc.build.lower import lower_and_build
    from mcc.frontends.onnx_import import import_onnx
    from mcc.targets import resolve_target

    preset = resolve_target(None)
    imported = import_onnx(model, {}, constant_inputs)
    lowered = lower_and_build(imported.mod, preset, preset.tvm_target())
    return relax.VirtualMachine(lowered.executable, tvm.cpu())


class MccBackend(Backend):
    """ONNX backend: ``prepare`` compiles with mcc, ``rep.run`` runs the compiled module."""

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs) -> MccBackendRep:
        super().prepare(model, device, **kwargs)
        try:
            return MccBackendRep(model, compile_in_process(model))
        except MccError:
            operands = shape_operand_inputs(model)
            if not operands:
                raise
            return MccBackendRep(model, None, operands)  # compiled on first run

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


prepare = MccBackend.prepare
run_model = MccBackend.run_model
supports_device = MccBackend.supports_device
