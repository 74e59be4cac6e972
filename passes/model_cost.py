"""Parameters and FLOPs of a Relax graph: what pruning reports before and after.

Parameters are the elements of every constant bound in the Relax functions
(weights, biases, folded batch-norm terms). FLOPs count conv2d and matmul as
two per multiply-accumulate (the usual convention); elementwise ops are left
out, as they are a rounding error next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from mcc.passes.shapes import static_shape


@dataclass(frozen=True)
class ModelCost:
    params: int
    flops: int
    conv_flops: int = 0  # the conv2d share of ``flops`` (what a layout choice affects)

    def to_json(self) -> dict:
        return {"params": self.params, "flops": self.flops}


def model_cost(mod: tvm.IRModule) -> ModelCost:
    params = 0
    flops = 0
    conv_flops = 0

    def visit(expr):
        nonlocal params, flops, conv_flops
        if isinstance(expr, tvm.ir.GenericConst):
            params += int(np.prod(expr.value.shape))
        elif isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            call_flops = _call_flops(expr)
            flops += call_flops
            if expr.op.name == "relax.nn.conv2d":
                conv_flops += call_flops

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return ModelCost(params, flops, conv_flops)


def _call_flops(call) -> int:
    name = call.op.name
    if name == "relax.nn.conv2d":
        out, weight = static_shape(call), static_shape(call.args[1])
        if out is None or weight is None:
            return 0
        # weight OIHW: each output element takes I/groups * KH * KW MACs
        return 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
    if name == "relax.matmul":
        out, a = static_shape(call), static_shape(call.args[0])
        if out is None or a is None:
            return 0
        return 2 * int(np.prod(out)) * a[-1]
    return 0
