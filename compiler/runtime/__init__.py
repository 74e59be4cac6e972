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
        self.path = Path(path)
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

        arrays = check_feed(self.inputs, feed)
        tensors = [tvm.runtime.tensor(a, self._device) for a in arrays]
        names = [t.name for t in self.outputs]

        def run() -> dict[str, np.ndarray]:
            result = self._main(*tensors)
            values = [result] if hasattr(result, "numpy") else list(result)
            return {name: v.numpy() for name, v in zip(names, values)}

        return run


def load(path: str | Path) -> Module:
    """Load a module written by ``mcc compile`` / ``Compiled.export``."""
    return Module(path)
