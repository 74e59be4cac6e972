"""Reshapes sink below elementwise ops (mcc.passes.sink_reshape), so an int8 dense kernel's
bias, activation, residual add and next quantize fuse into its epilogue."""

import numpy as np
from onnx import helper
from tvm import relax
from tvm.script import relax as R

import mcc
from conftest import make_model
from mcc.passes.sink_reshape import sink_reshapes


def _ops(mod) -> list[str]:
    names = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: names.append(e.op.name) if isinstance(e, relax.Call)
        and hasattr(e.op, "name") else None)
    return names


@R.function
def _bias_then_residual(x: R.Tensor((1, 1, 8, 16), "float32"), skip: R.Tensor((8, 16), "float32"),
                        bias: R.Tensor((16,), "float32")):
    y = R.reshape(x, R.shape([8, 16]))
    z = R.add(y, bias)
    a = R.nn.relu(z)
    r = R.add(a, skip)
    w = R.reshape(r, R.shape([1, 1, 8, 16]))
    q = R.multiply(w, R.const(2.0, "float32"))
    return q


@R.function
def _row_bias(x: R.Tensor((1, 1, 8, 16), "float32"), bias: R.Tensor((8, 1), "float32")):
    y = R.reshape(x, R.shape([8, 16]))
    z = R.add(y, bias)
    return z


def test_reshapes_sink_through_bias_relu_and_residual_and_cancel():
    import tvm

    mod = sink_reshapes(tvm.IRModule({"main": _bias_then_residual}))
    ops = _ops(mod)
    # the two reshapes of x cancel; the residual input is viewed as x's shape instead
    assert ops.count("relax.reshape") == 1, mod["main"].script()
    script = mod["main"].script()
    assert "R.add(x, bias)" in script and "R.reshape(skip, R.shape([1, 1, 8, 16]))" in script


def test_bias_along_another_axis_stops_the_reshape():
    import tvm

    mod = sink_reshapes(tvm.IRModule({"main": _row_bias}))
    assert _ops(mod) == ["relax.reshape", "relax.add"]


def test_int8_dense_epilogues_fuse_into_the_kernel():
    """MatMul (a [1, 16, 32] activation) -> bias -> Relu -> MatMul -> bias -> residual add:
    the adds and the Relu are in the int8 kernels, no kernel of their own."""
    rng = np.random.default_rng(0)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w1"], ["m1"]),
         helper.make_node("Add", ["m1", "b1"], ["a1"]),
         helper.make_node("Relu", ["a1"], ["r1"]),
         helper.make_node("MatMul", ["r1", "w2"], ["m2"]),
         helper.make_node("Add", ["m2", "b2"], ["a2"]),
         helper.make_node("Add", ["a2", "x"], ["y"])],
        [("x", [1, 16, 32])], [("y", [1, 16, 32])],
        [("w1", rng.standard_normal((32, 64)) * 0.2), ("b1", rng.standard_normal(64)),
         ("w2", rng.standard_normal((64, 32)) * 0.2), ("b2", rng.standard_normal(32))], "mlp")
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    kernels = compiled.report["schedule"]["kernels"]
    dense = [k for k in kernels if "qconv2d" in k]
    assert len(dense) == 2 and any("relu" in k for k in dense), sorted(kernels)
    assert all("add" in k for k in dense), sorted(kernels)
    # besides them: the input's quantize and free views (reshapes) only
    others = [k for k in kernels if "qconv2d" not in k and not k.startswith("reshape")]
    assert len(others) == 1 and "round" in others[0], sorted(kernels)
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999
