"""Load a compiled ``.so`` and run it: ``mcc.load(path).run({"input": array})``.

Needs only the TVM runtime. Inputs are checked against the embedded metadata
before anything runs, so a wrong name, shape or dtype is a one-line MccError
rather than a crash inside the VM.

The runtime is what a deployed module needs: it imports nothing of the
compiler (only mcc.runtime.*, mcc.errors and mcc.targets), so every stage may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mcc.errors import MccError, first_line
from mcc.runtime.metadata import read_metadata
from mcc.runtime.tensors import TensorSpec, check_feed


class Module:
    """A loaded mcc module: ``inputs``, ``outputs``, ``metadata`` and ``run(feed)``."""

    def __init__(self, path: str | Path):
        from mcc.runtime.integrity import require_intact

        self.path = Path(path)
        require_intact(self.path)  # before anything reads or dlopens it
        self.metadata = read_metadata(self.path)
        self.inputs = [TensorSpec.from_json(t) for t in self.metadata["inputs"]]
        self.outputs = [TensorSpec.from_json(t) for t in self.metadata["outputs"]]
        self._check_runs_here()
        import tvm
        from tvm import relax

        from mcc.runtime.tvm_log import quiet_tvm
        from mcc.targets import TargetPreset

        try:
            with quiet_tvm():  # one TVM warning line per constant otherwise
                library = tvm.runtime.load_module(str(self.path))
        except Exception as err:
            raise MccError(f"cannot load '{self.path}': {first_line(err)}") from None
        self._device = TargetPreset.from_json(self.metadata["target"]).device()
        self._vm = relax.VirtualMachine(library, self._device)
        self._main = self._vm["main"]

    def _check_runs_here(self) -> None:
        from mcc.targets import TargetPreset

        target = self.metadata["target"]
        reason = TargetPreset.from_json(target).why_not_runnable()
        if reason is not None:
            cpu = target["tvm"].get("arch") or target["tvm"].get("mcpu", "generic")
            raise MccError(f"'{self.path}' is built for {target['name']} ({target['arch']}, "
                           f"{cpu}) and cannot run on this machine: {reason}")

    def __repr__(self) -> str:
        sig = ", ".join(f"{t.name}: {t.dtype}{t.shape_text()}" for t in self.inputs)
        return f"<mcc.Module {self.path.name} ({sig})>"

    def run(self, feed: dict) -> dict[str, np.ndarray]:
        """Run once; ``feed`` maps input names to arrays. Returns output name -> array."""
        return self.runner(feed)()

    def runner(self, feed: dict) -> Callable[[], dict[str, np.ndarray]]:
        """A zero-argument callable that runs on ``feed``: inputs are checked and copied once
        (what benchmarks time)."""
        import tvm

        if isinstance(feed, dict):  # int4/uint4/int2/uint2/float4 arrays: held one per byte
            from mcc.runtime.tensors import to_storage

            feed = {name: to_storage(np.asarray(value)) for name, value in feed.items()}
        arrays = check_feed(self.inputs, feed)
        tensors = [tvm.runtime.tensor(a, self._device) for a in arrays]
        specs = self.outputs

        def run() -> dict[str, np.ndarray]:
            result = self._main(*tensors)
            if len(specs) > 1:
                values = list(result)
            elif _is_tuple(result) and len(result) == 1:
                values = [result[0]]
            else:
                values = [result]  # one output: a tensor, a shape value or a scalar
            return {spec.name: output_array(v, spec.dtype) for spec, v in zip(specs, values)}

        return run


def _is_tuple(value) -> bool:
    return not hasattr(value, "numpy") and type(value).__name__ in ("Array", "list", "tuple")


def output_array(value, dtype: str | None = None):
    """One VM result as numpy: a tensor as is; a computed shape (ONNX ``Shape``) as int64[n]
    and a scalar (Relax PrimValue) as a 0-d array, both of the declared ``dtype``; a tuple
    (an ONNX sequence) as a list of arrays."""
    if hasattr(value, "numpy"):
        return tensor_array(value)
    if type(value).__name__ == "Shape":
        array = np.array([int(v) for v in value], dtype=np.int64)
    elif isinstance(value, (bool, int, float, np.generic)):
        array = np.array(value)
    else:
        return [output_array(v) for v in value]
    if dtype and str(array.dtype) != dtype:
        try:
            array = array.astype(dtype)
        except TypeError:  # a dtype numpy does not know: keep what the VM gave
            pass
    return array


def tensor_array(tensor) -> np.ndarray:
    """A VM tensor as a fresh numpy array. Through DLPack and one copy: 0.2 us where
    ``Tensor.numpy()`` takes ~6 us in Python (a quarter of a wake-word model's run). The
    copy keeps ``numpy()``'s ownership: an output may be a constant or the input itself,
    which a caller writing into the array must not change. Dtypes numpy cannot take over
    DLPack (bfloat16, float8) and non-CPU tensors go through ``numpy()``."""
    try:
        return np.from_dlpack(tensor).copy()
    except (BufferError, RuntimeError, TypeError, ValueError):
        return tensor.numpy()


def load(path: str | Path) -> Module:
    """Load a module written by ``mcc compile`` / ``Compiled.export``."""
    return Module(path)
