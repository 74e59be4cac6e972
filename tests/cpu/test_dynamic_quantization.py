"""Dynamically quantized graphs (``onnxruntime.quantization.quantize_dynamic``'s form):
DynamicQuantizeLinear computes each activation's uint8 scale and zero point at run time
from the tensor's min and max, then ConvInteger / MatMulInteger multiply uint8 x uint8
with zero points, and the int32 result is rescaled in float.

Numeric tests compare tiny graphs of that form with ONNX Runtime; structural tests check
the kernels mcc makes of them.
"""

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

import mcc
from mcc.build.pipeline import optimize
from mcc.frontends import import_model
from mcc.schedule.rules import TiledReduction, TotalReduction, rules_for

X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2}


def _dynamic_conv_model(shape=(1, 8, 12, 16), oc=16, matmul_n=24):
    """x -> DynamicQuantizeLinear -> ConvInteger (uint8 weights, zero point) -> + the
    float bias quantized at run time (floor(b / scale)) -> float * (x scale * w scale)
    -> x * sigmoid(x) -> DynamicQuantizeLinear -> MatMulInteger over the last axis ->
    float * scale: the layers of a dynamically quantized CNN + CTC head."""
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    consts = {
        "w": rng.integers(0, 256, (oc, c, 3, 3)).astype(np.uint8),
        "wz": np.array(131, np.uint8), "ws": np.array(0.004, np.float32),
        "b": (rng.standard_normal(oc) * 0.5).astype(np.float32), "bshape": np.array([1, oc, 1, 1]),
        "wm": rng.integers(0, 256, (w, matmul_n)).astype(np.uint8),
        "wmz": np.array(118, np.uint8), "wms": np.array(0.003, np.float32)}
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Div", ["b", "s"], ["bd"]),  # the float bias in int32 units
        helper.make_node("Floor", ["bd"], ["bf"]),
        helper.make_node("Cast", ["bf"], ["bi"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["bi", "bshape"], ["br"]),
        helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "br"], ["cb"]),
        helper.make_node("Cast", ["cb"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["cf", "s"], ["y"]),
        helper.make_node("Sigmoid", ["y"], ["g"]),
        helper.make_node("Mul", ["y", "g"], ["a"]),
        helper.make_node("DynamicQuantizeLinear", ["a"], ["aq", "as", "az"]),
        helper.make_node("MatMulInteger", ["aq", "wm", "az", "wmz"], ["m"]),
        helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["as", "wms"], ["ms"]),
        helper.make_node("Mul", ["mf", "ms"], ["z"])]
    graph = helper.make_graph(
        nodes, "dynamic_q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [n, oc, h, matmul_n])],
        initializer=[nh.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("shape", [(1, 8, 12, 16), (1, 3, 5, 7)])  # 7: no lane width divides
def test_dynamic_conv_and_matmul_match_onnxruntime(shape):
    model = _dynamic_conv_model(shape)
    compiled = mcc.compile(model, target=X86)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3
        (ref,) = session.run(None, {"x": x})
        got = compiled.run({"x": x})["z"]
        # the same uint8 codes and int32 sums; only the final float rescale may round apart
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def _kernels(model):
    mod, _ = optimize(import_model(model, {}, None).mod, tvm.target.Target(X86))
    return {gv.name_hint: f for gv, f in mod.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc)}


def test_the_range_of_a_tensor_is_found_in_vector_lanes():
    """DynamicQuantizeLinear's min and max of the whole tensor: partial results in
    vector lanes with independent accumulators, not one scalar chain."""
    kernels = _kernels(_dynamic_conv_model((1, 16, 16, 32)))
    ranges = [name for name in kernels if name.rstrip("0123456789") in ("min", "max")]
    assert len(ranges) == 4  # min and max of the input and of the conv's activation
    for name in ranges:
        sch = TotalReduction().apply(kernels[name], tvm.target.Target(X86), False)
        assert sch is not None, name
        text = sch.mod["main"].script()
        assert "_rf" in text and "T.vectorized(T.int64(16))" in text
        assert "T.unroll(T.int64(4))" in text  # 4 independent accumulator vectors


def test_a_reduction_that_keeps_an_axis_is_not_taken():
    model = helper.make_model(helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["y"], axes=[1], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]),
        opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for func in _kernels(model).values():
        assert TotalReduction().apply(func, tvm.target.Target(X86), False) is None


def test_it_comes_before_the_fallback_rules():
    names = [type(r).__name__ for r in rules_for(tvm.target.Target(X86))]
    assert names.index("TotalReduction") < names.index("ParallelFallback")


def test_the_run_time_bias_is_computed_once_and_the_epilogue_joins_the_tile():
    """The bias quantized at run time (floor(b / scale), per channel) is its own small
    kernel (mcc.passes.side_inputs_apart): fused into the conv, it ran once per output
    element, and x * sigmoid(x) copied it into each read of x. The conv's epilogue then
    reads it like a constant bias, and with x * sigmoid(x) joins the tile's write-back."""
    kernels = _kernels(_dynamic_conv_model((1, 8, 16, 32)))
    (name,) = [n for n in kernels if "conv2d" in n]
    assert "floor" not in name
    assert any("floor" in n for n in kernels)  # the bias chain, a kernel of its own
    sch = TiledReduction().apply(kernels[name], tvm.target.Target(X86), False)
    text = sch.mod["main"].script()
    assert text.count("T.parallel(") == 2, text  # the padded input, then the conv tiles
    assert "T.sigmoid(" not in text  # FastMath's vectorisable form (mcc.passes.fast_math)


def test_run_time_scales_skip_the_qdq_preparation():
    """Only a dequantize with a constant scale and zero point can become an int8 site in
    "qdq" mode; a dynamically quantized model has none, so it is not prepared for it."""
    from test_quantize import _qlinear_model

    from mcc.passes.quantize import has_static_activation_qdq

    assert not has_static_activation_qdq(import_model(_dynamic_conv_model(), {}, None).mod)
    assert has_static_activation_qdq(import_model(_qlinear_model(), {}, None).mod)


def _matmul_integer_model(k=40, n=24, weight_dtype=np.uint8, bz=131):
    """MatMulInteger of a uint8 input by a constant weight with a zero point; the input's
    zero point is a graph input (known at run time only, as DynamicQuantizeLinear's)."""
    rng = np.random.default_rng(1)
    low, high = (0, 256) if weight_dtype == np.uint8 else (-128, 128)
    consts = {"w": rng.integers(low, high, (k, n)).astype(weight_dtype),
              "wz": np.array(bz, weight_dtype)}
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 5, k]),
         helper.make_tensor_value_info("az", TensorProto.UINT8, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [3, 5, n])],
        initializer=[nh.from_array(v, key) for key, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("weight_dtype, bz", [(np.uint8, 131), (np.uint8, 128), (np.int8, -3)])
def test_matmul_integer_runs_as_an_exact_int8_kernel(weight_dtype, bz):
    model = _matmul_integer_model(weight_dtype=weight_dtype, bz=bz)
    compiled = mcc.compile(model, target=X86)
    kernels = compiled.report["schedule"]["kernels"]
    assert any("mcc_qmatmul" in name and info["schedule"] == "int8 kernel"
               for name, info in kernels.items()), kernels
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for zero_point in (0, 77, 255):
        feed = {"a": rng.integers(0, 256, (3, 5, 40)).astype(np.uint8),
                "az": np.array(zero_point, np.uint8)}
        np.testing.assert_array_equal(compiled.run(feed)["y"], session.run(None, feed)[0])
