"""Lower the scheduled Relax module to a VM executable for the target."""

from __future__ import annotations

import tvm

from mcc.errors import MccError, first_line


def build(mod: tvm.IRModule, target: tvm.target.Target):
    """``tvm.compile`` with TVM's lowering pipeline (the graph work is already done)."""
    from mcc.build.cuda import nvcc_for

    try:
        with nvcc_for(target):  # CUDA kernels compiled by nvcc for the target's arch
            return tvm.compile(mod, target=target, relax_pipeline="default")
    except Exception as err:
        raise MccError(f"build failed for target {target.kind.name}: {first_line(err)}") from None
