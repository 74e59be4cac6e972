"""Run a VM executable built for this machine on numpy feeds: ``vm_runner(exe, names)(feed)``.

What the compiler runs in-process before anything is exported: calibration and accuracy
runs (mcc.driver.quantization) and the timing of candidate layouts (mcc.driver.layout_choice).
"""

from __future__ import annotations

import numpy as np


def vm_runner(executable, input_names: list[str]):
    """feed -> list of output arrays, for an executable built for this machine."""
    import tvm
    from tvm import relax

    from mcc.runtime import tensor_array

    device = tvm.cpu()
    vm = relax.VirtualMachine(executable, device)

    def run(feed: dict) -> list[np.ndarray]:
        # np.asarray, not np.ascontiguousarray: that makes a 0-d (scalar) input 1-d
        args = [tvm.runtime.tensor(np.asarray(feed[n], order="C"), device) for n in input_names]
        return [tensor_array(v) for v in _flat(vm["main"](*args))]

    return run


def _flat(result) -> list:
    """The tensors of a VM result in order, nested tuples flattened (a model with several
    outputs, instrumented for calibration, returns its output tuple inside a tuple)."""
    if hasattr(result, "numpy"):
        return [result]
    return [t for item in result for t in _flat(item)]
