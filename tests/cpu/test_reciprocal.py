"""Division by a constant as multiplication by its reciprocal (mcc.passes.reciprocal), the
int8 pipeline's: GELU's x / sqrt(2) and attention's scores / sqrt(d) were vector divisions."""

import numpy as np
import tvm
from onnx import helper
from tvm import relax
from tvm.script import relax as R

import mcc
from conftest import make_model
from mcc.passes.reciprocal import divide_by_reciprocal


def _ops(mod) -> list[str]:
    names = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: names.append(e.op.name) if isinstance(e, relax.Call)
        and isinstance(e.op, tvm.ir.Op) else None)
    return names


@R.function
def _divides(x: R.Tensor((4, 8), "float32"), y: R.Tensor((4, 8), "float32")):
    a = R.divide(x, R.const(1.4142135381698608, "float32"))
    b = R.divide(a, y)  # by a tensor: stays
    c = R.divide(b, R.const(0.0, "float32"))  # by zero: stays (inf / NaN as before)
    return c


def test_only_finite_nonzero_constant_divisors_become_multiplies():
    mod = divide_by_reciprocal(tvm.IRModule({"main": _divides}))
    assert _ops(mod) == ["relax.multiply", "relax.divide", "relax.divide"]
    assert "0.70710676908493042" in mod["main"].script()


def test_int8_gelu_divides_by_no_constant():
    """MatMul -> GELU as exported by torch (x / sqrt(2) inside erf): the int8 kernel's
    epilogue multiplies, and the module still matches fp32."""
    rng = np.random.default_rng(1)
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Div", ["m", "sqrt2"], ["d"]),
         helper.make_node("Erf", ["d"], ["e"]),
         helper.make_node("Add", ["e", "one"], ["e1"]),
         helper.make_node("Mul", ["m", "e1"], ["g"]),
         helper.make_node("Mul", ["g", "half"], ["y"])],
        [("x", [1, 16, 32])], [("y", [1, 16, 64])],
        [("w", rng.standard_normal((32, 64)) * 0.2), ("sqrt2", np.float32(np.sqrt(2))),
         ("one", np.float32(1)), ("half", np.float32(0.5))], "gelu")
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    kernels = compiled.report["schedule"]["kernels"]
    assert not [k for k in kernels if "divide" in k], sorted(kernels)
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999
