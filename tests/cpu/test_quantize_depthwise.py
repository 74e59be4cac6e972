"""Depthwise convolutions in int8 builds: they read the uint8 tensor the previous conv's
epilogue writes (mcc.passes.int8_kernels.dwconv_func), not an fp32 copy of it."""

import numpy as np
import pytest
import tvm
from onnx import helper

import mcc
from conftest import make_model
from mcc.driver.config import CompileConfig
from mcc.frontends import import_model
from mcc.targets import resolve_target

ort = pytest.importorskip("onnxruntime")


def _mbv2_blocks(channels=24, size=14):
    """Two MobileNetV2 blocks: conv -> ReLU6 -> depthwise 3x3 (stride 2, then 1) -> ReLU6
    -> conv."""
    rng = np.random.default_rng(3)
    c = channels
    clip = ("lo", np.float32(0)), ("hi", np.float32(6))
    return make_model(
        [helper.make_node("Conv", ["x", "w0"], ["a"]),
         helper.make_node("Clip", ["a", "lo", "hi"], ["ra"]),
         helper.make_node("Conv", ["ra", "wd0", "bd0"], ["d"], pads=[1] * 4, group=c,
                          strides=[2, 2]),
         helper.make_node("Clip", ["d", "lo", "hi"], ["rd"]),
         helper.make_node("Conv", ["rd", "w1"], ["b"]),
         helper.make_node("Clip", ["b", "lo", "hi"], ["rb"]),
         helper.make_node("Conv", ["rb", "wd1"], ["e"], pads=[1] * 4, group=c),
         helper.make_node("Clip", ["e", "lo", "hi"], ["re"]),
         helper.make_node("Conv", ["re", "w2"], ["y"])],
        [("x", [1, 8, size, size])], [("y", [1, 16, size // 2, size // 2])],
        [("w0", rng.standard_normal((c, 8, 1, 1)) * 0.3),
         ("wd0", rng.standard_normal((c, 1, 3, 3)) * 0.3), ("bd0", rng.standard_normal(c) * 0.1),
         ("w1", rng.standard_normal((c, c, 1, 1)) * 0.3),
         ("wd1", rng.standard_normal((c, 1, 3, 3)) * 0.3),
         ("w2", rng.standard_normal((16, c, 1, 1)) * 0.3), *clip], "mbv2_blocks")


def _dwconv_inputs(mod):
    """The dtype of the data each depthwise call reads, and how many fp32 convs remain."""
    calls, convs = [], []

    def visit(expr):
        if not isinstance(expr, tvm.relax.Call) or not isinstance(expr.op, tvm.ir.Op):
            return
        if expr.op.name == "relax.call_tir" and expr.args[0].name_hint.startswith("mcc_dwconv"):
            calls.append(expr.args[1].fields[0].ty.dtype)
        elif expr.op.name == "relax.nn.conv2d":
            convs.append(expr)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return calls, len(convs)


def test_depthwise_convs_read_uint8_and_match_onnxruntime():
    from mcc.driver.quantization import Quantizer

    model = _mbv2_blocks()
    config = CompileConfig(target=resolve_target(None), quantize="int8", calibration="random")
    quantizer = Quantizer(import_model(model, {}), config, config.target.tvm_target(),
                          say=lambda m: None)
    mod = quantizer.run()
    assert _dwconv_inputs(mod) == (["uint8", "uint8"], 0)
    assert quantizer.to_json()["fp32_ops"] == {}

    compiled = mcc.compile(model, quantize="int8", calibration="random")
    assert compiled.report["schedule"]["naive"] == 0, compiled.report["schedule"]["kernels"]
    assert any("mcc_dwconv" in k for k in compiled.report["schedule"]["kernels"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 14, 14)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString())
    want = want.run(None, {"x": x})[0].ravel().astype(np.float64)
    got = compiled.run({"x": x})["y"].ravel().astype(np.float64)
    assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.999


@pytest.mark.parametrize("stride, padding, zero_point", [((1, 1), (1, 1, 1, 1), 37),
                                                         ((2, 2), (0, 1, 1, 0), 0)])
def test_dwconv_kernel_pads_with_the_zero_point(stride, padding, zero_point):
    """The kernel vs float64 numpy: (x - zx) * sx convolved with W, zero padding in real
    values (the zero point in the uint8 tensor); 20 channels, not a multiple of 16."""
    from mcc.passes.int8_kernels import DwConvShape, dwconv_func, dwconv_weights

    shape = DwConvShape(1, 7, 9, 20, 3, 3, stride, padding, zero_point)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (1, 7, 9, 20)).astype(np.uint8)
    w = rng.standard_normal((20, 3, 3, 1)).astype(np.float32)
    sx = 0.02
    w_scaled, correction = dwconv_weights(w, sx, zero_point)
    func = dwconv_func(shape).with_attr("global_symbol", "main")
    lib = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    oh, ow = shape.out_hw
    out = tvm.runtime.tensor(np.zeros((1, oh, ow, 20), np.float32))
    lib["main"](*[tvm.runtime.tensor(a) for a in (x, w_scaled, correction)], out)
    pt, pl, pb, pr = padding
    real = np.pad((x.astype(np.float64) - zero_point) * sx, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    want = np.zeros((1, oh, ow, 20))
    for i in range(3):
        for j in range(3):
            want += real[:, i:i + oh * stride[0]:stride[0], j:j + ow * stride[1]:stride[1]] \
                * w[:, i, j, 0]
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


def test_tensor_read_by_a_conv_and_a_residual_add_is_written_once_as_uint8():
    """ResNet's block output feeds the next block's convs and its residual add: the add reads
    the dequantized uint8 tensor, so the producer's epilogue writes uint8 only and no
    standalone quantize kernel (an fp32 write and re-read of the tensor) remains."""
    rng = np.random.default_rng(5)
    model = make_model(
        [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1] * 4),
         helper.make_node("Relu", ["a"], ["r"]),
         helper.make_node("Conv", ["r", "w1"], ["b"], pads=[1] * 4),
         helper.make_node("Relu", ["b"], ["rb"]),
         helper.make_node("Conv", ["rb", "w2"], ["c"]),
         helper.make_node("Add", ["c", "r"], ["s"]),
         helper.make_node("Relu", ["s"], ["y"])],
        [("x", [1, 8, 10, 10])], [("y", [1, 32, 10, 10])],
        [("w0", rng.standard_normal((32, 8, 3, 3)) * 0.3),
         ("w1", rng.standard_normal((32, 32, 3, 3)) * 0.1),
         ("w2", rng.standard_normal((32, 32, 1, 1)) * 0.1)], "residual")
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    kernels = compiled.report["schedule"]["kernels"]
    standalone = [k for k in kernels if "round" in k and "qconv" not in k
                  and "transpose" not in k]
    assert not standalone, kernels
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999
    x = np.random.default_rng(1).uniform(-1, 1, (1, 8, 10, 10)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0].ravel()
    got = compiled.run({"x": x})["y"].ravel()
    assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) > 0.999
