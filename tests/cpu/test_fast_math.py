"""mcc.FastMath: TVM's fast exp/erf/tanh/softmax rewrites, also on modules whose Relax
functions call each other (ONNX Loop), where TVM's own FastMathTransform crashes."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from mcc.passes import FastMath


@I.ir_module
class CallsAFunction:
    @R.function
    def helper(x: R.Tensor((4, 8), "float32")) -> R.Tensor((4, 8), "float32"):
        return R.nn.softmax(R.exp(x), axis=-1)

    @R.function
    def main(x: R.Tensor((4, 8), "float32")) -> R.Tensor((4, 8), "float32"):
        y = CallsAFunction.helper(x)
        return R.tanh(y)


def _ops(mod) -> set[str]:
    names = set()

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            names.add(expr.op.name)

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return names


def test_tvm_pass_crashes_where_ours_rewrites_every_function():
    with pytest.raises(Exception, match="name"):
        relax.transform.FastMathTransform()(CallsAFunction)
    rewritten = FastMath()(CallsAFunction)
    assert not {"relax.exp", "relax.tanh", "relax.nn.softmax"} & _ops(rewritten)
    assert "relax.call_tir" in _ops(rewritten)


def test_outputs_match_the_exact_functions():
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    results = []
    for mod in (CallsAFunction, FastMath()(CallsAFunction)):
        vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
        results.append(vm["main"](tvm.runtime.tensor(x)).numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)
