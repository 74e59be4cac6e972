"""What a sub-millisecond model pays per call besides its kernels (issue 15).

A model with an ``If`` imports with no dataflow block, and FuseOps fuses nothing outside
one: a wake-word head ran 55 kernels where 20 do. Outputs came back through
``Tensor.numpy()``, ~6 us of Python per output against a 20 us model.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

import mcc
from mcc.build.pipeline import optimize
from mcc.frontends import import_model
from mcc.runtime import tensor_array


def _head_with_if():
    """openWakeWord's pattern: a dense head (MatMul, bias, layer norm, ReLU), then an If on
    its score picks one of two results."""
    rng = np.random.default_rng(0)

    def const(name, shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape,
                                  rng.standard_normal(int(np.prod(shape))).astype(np.float32))

    def branch(name, op):
        return helper.make_graph([helper.make_node(op, ["h"], [f"y_{name}"])], name, [],
                                 [helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT,
                                                                [1, 32])])

    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("ReduceMean", ["a"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["a", "mu"], ["d"]),
        helper.make_node("Mul", ["d", "g"], ["s"]),
        helper.make_node("Relu", ["s"], ["h"]),
        helper.make_node("ReduceSum", ["h"], ["score"], keepdims=0),
        helper.make_node("Greater", ["score", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", "Sigmoid"),
                         else_branch=branch("else", "Neg")),
    ]
    graph = helper.make_graph(
        nodes, "head_with_if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [const("w", [64, 32]), const("b", [32]), const("g", [32]),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _kernel_calls_outside_if(mod) -> int:
    calls = 0
    for binding in (b for block in mod["main"].body.blocks for b in block.bindings):
        value = binding.value
        if isinstance(value, relax.Call) and value.op.same_as(tvm.ir.Op.get("relax.call_tir")):
            calls += 1
    return calls


def test_bindings_around_an_if_are_fused():
    imported = import_model(_head_with_if())
    assert not any(isinstance(b, relax.DataflowBlock) for b in imported.mod["main"].body.blocks)
    mod, passes = optimize(imported.mod, tvm.target.Target("llvm"), layout="NHWC")
    assert "mcc.DataflowBlocks" in passes
    # matmul + bias, mean + subtract, scale + relu + sum + compare: unfused they are 8 kernels
    assert _kernel_calls_outside_if(mod) <= 4


@pytest.mark.parametrize("sign", [1.0, -1.0])  # each branch of the If taken
def test_head_with_if_matches_onnx_runtime(sign):
    model = _head_with_if()
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString())
    # find an input for which the score has the wanted sign
    for scale in np.linspace(0.1, 3.0, 30):
        feed = {"x": (x * scale * sign).astype(np.float32)}
        expected = session.run(None, feed)[0]
        if (expected > 0).all() == (sign > 0):
            break
    compiled = mcc.compile(model, example_inputs=feed)
    np.testing.assert_allclose(compiled.run(feed)["y"], expected, rtol=1e-5, atol=1e-5)


def test_outputs_are_fresh_arrays_of_the_declared_dtypes():
    # Identity returns the very tensor the runner feeds: a caller writing into the output
    # must not change the next run's input
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]),
         helper.make_node("Greater", ["x", "zero"], ["p"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("p", TensorProto.BOOL, [2, 3])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    run = mcc.compile(model).module.runner({"x": x})
    first = run()
    assert first["y"].dtype == np.float32 and first["p"].dtype == np.bool_
    np.testing.assert_array_equal(first["p"], x > 0)
    first["y"][:] = 99
    np.testing.assert_array_equal(run()["y"], x)


def test_tensor_array_takes_dtypes_numpy_has_no_dlpack_for():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([[1.5, -2.0]], dtype=ml_dtypes.bfloat16)
    out = tensor_array(tvm.runtime.tensor(values))
    assert out.dtype == values.dtype
    np.testing.assert_array_equal(out, values)
    scalar = tensor_array(tvm.runtime.tensor(np.array(3.0, np.float32)))
    assert scalar.shape == () and scalar == 3.0
