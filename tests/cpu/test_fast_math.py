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


@I.ir_module
class Silu:
    @R.function
    def main(x: R.Tensor((2, 64), "float32")) -> R.Tensor((2, 64), "float32"):
        return R.multiply(R.nn.silu(x), R.sigmoid(x))


def _expf_calls(mod) -> list[str]:
    """Calls of libm's scalar expf in the compiled code (what tir.sigmoid lowers to)."""
    lib = tvm.compile(mod, "llvm")
    asm = "\n".join(m.inspect_source("asm") for m in lib.mod.imports)
    return [line for line in asm.splitlines() if "call" in line and "expf" in line]


def test_sigmoid_and_silu_become_vectorisable_polynomials():
    rewritten = FastMath()(Silu)
    assert not {"relax.sigmoid", "relax.nn.silu"} & _ops(rewritten)
    # without the rewrite TVM calls scalar expf per element (a SiLU epilogue cost more
    # than the conv it followed); after it, no libm call is left
    assert _expf_calls(Silu)
    assert not _expf_calls(rewritten)


def test_sigmoid_and_silu_match_onnx_runtime_including_limits():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32) * 30
    x[0, :6] = [np.inf, -np.inf, np.nan, 88.5, -88.5, 0.0]
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"]),
         helper.make_node("Mul", ["y", "s"], ["z"])], "silu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    vm = relax.VirtualMachine(tvm.compile(FastMath()(Silu), "llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    assert np.isnan(got[0, 2])  # NaN in, NaN out; inf * sigmoid(inf) = inf, -inf * 0 = NaN
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # NaNs compare equal
