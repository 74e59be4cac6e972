"""Convolutions the conv schedule did not take before: conv1d (mcc.Conv1dAsConv2d) and
output channel counts that are not whole vectors (mcc.PadChannels). Structure after the
passes, and the compiled module against ONNX Runtime."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import mcc
from conftest import make_model
from mcc.passes import conv1d_as_conv2d, count_ops, pad_channels


def _conv_model(x_shape, w_shape, y_shape, **attrs):
    rng = np.random.default_rng(3)
    node = helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)
    return make_model(
        [node, helper.make_node("Relu", ["c"], ["y"])], [("x", x_shape)], [("y", y_shape)],
        [("w", rng.standard_normal(w_shape) * 0.1), ("b", rng.standard_normal(w_shape[0]))])


def _compile_and_compare(model, x_shape, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    compiled = mcc.compile(str(path), verify=False)
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    got = compiled.run({"x": x})["y"]
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return compiled


CONV1D = [  # (x, w, y, attrs): STFT-like strided, padded + dilated, grouped
    ((1, 1, 2048), (40, 1, 256), (1, 40, 8), dict(strides=[256])),
    ((1, 8, 50), (16, 8, 3), (1, 16, 46), dict(pads=[1, 3], dilations=[3])),
    ((1, 8, 32), (8, 4, 5), (1, 8, 16), dict(strides=[2], pads=[2, 2], group=2)),
]


@pytest.mark.parametrize("x_shape, w_shape, y_shape, attrs", CONV1D)
def test_conv1d_runs_as_conv2d_and_matches(x_shape, w_shape, y_shape, attrs, tmp_path):
    compiled = _compile_and_compare(_conv_model(x_shape, w_shape, y_shape, **attrs),
                                    x_shape, tmp_path)
    kernels = compiled.report["schedule"]["kernels"]
    assert not any("conv1d" in name for name in kernels)
    conv = [info for name, info in kernels.items() if "conv2d" in name]
    assert conv and all(info["schedule"] == "rule TiledReduction" for info in conv)


def test_conv1d_pass_leaves_no_conv1d():
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(_conv_model(*CONV1D[1][:3], **CONV1D[1][3]), keep_params_in_input=False)
    assert count_ops(mod)["relax.nn.conv1d"] == 1
    ops = count_ops(conv1d_as_conv2d(mod))
    assert ops["relax.nn.conv1d"] == 0 and ops["relax.nn.conv2d"] == 1


@pytest.mark.parametrize("channels", [257, 1000 // 40])
def test_odd_output_channels_are_padded_and_sliced(channels, tmp_path):
    x_shape = (1, 8, 6, 6)
    model = _conv_model(x_shape, (channels, 8, 3, 3), (1, channels, 4, 4))
    compiled = _compile_and_compare(model, x_shape, tmp_path)
    conv = [info for name, info in compiled.report["schedule"]["kernels"].items()
            if "conv2d" in name]
    assert conv and all(info["schedule"] == "rule TiledReduction" for info in conv)


def test_pad_channels_rounds_up_to_the_block():
    from tvm import relax
    from tvm.script import relax as R

    w = relax.const(np.ones((1, 1, 8, 30), dtype="float32"))

    @R.function
    def main(x: R.Tensor((1, 4, 4, 8), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC")
            R.output(y)
        return y

    import tvm

    mod = pad_channels(tvm.IRModule({"main": main}))
    assert count_ops(mod)["relax.strided_slice"] == 1
    assert [int(d) for d in mod["main"].ret_ty.shape] == [1, 4, 4, 30]
    conv = [b.value for b in mod["main"].body.blocks[0].bindings
            if b.value.op.name == "relax.nn.conv2d"][0]
    assert [int(d) for d in conv.ty.shape] == [1, 4, 4, 32]


def test_whole_vector_counts_are_padded_only_when_cheap():
    from tvm import relax
    from tvm.script import relax as R

    def conv_with(channels):
        w = relax.const(np.ones((1, 1, 8, channels), dtype="float32"))

        @R.function
        def main(x: R.Tensor((1, 4, 4, 8), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, data_layout="NHWC", kernel_layout="HWIO",
                                out_layout="NHWC")
                R.output(y)
            return y

        import tvm

        return count_ops(pad_channels(tvm.IRModule({"main": main})))["relax.strided_slice"]

    assert conv_with(24) == 0  # 8-lane vectors; 32 would be a third more work
    assert conv_with(200) == 1  # 208: 4% more work for full vectors
    # 4-lane vectors only (ShuffleNet's per-group convs) ran at half speed: padded
    assert conv_with(68) == 1  # 80: 18% more work, twice as fast
    assert conv_with(20) == 0  # 32: 60% more work


def test_wide_transposed_gemm_with_odd_columns_gets_the_matmul_schedule(tmp_path):
    """A classifier head Gemm(transB=1) over N = 1001 classes (not whole vectors)."""
    rng = np.random.default_rng(5)
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [("x", [4, 64])],
        [("y", [4, 1001])], [("w", rng.standard_normal((1001, 64)) * 0.1),
                             ("b", rng.standard_normal(1001))])
    compiled = _compile_and_compare(model, (4, 64), tmp_path)
    kernels = compiled.report["schedule"]["kernels"]
    matmul = [info for name, info in kernels.items() if "matmul" in name]
    assert matmul and all(info["schedule"] == "rule TiledReduction" for info in matmul)


@pytest.mark.parametrize("groups, channels", [(3, 24), (4, 136)])
def test_grouped_conv_runs_as_one_conv_per_group(groups, channels, tmp_path):
    """ShuffleNet-style grouped 1x1 and 3x3 convs (not depthwise): each group a dense conv
    under the tiled conv schedule, outputs matching ONNX Runtime."""
    x_shape = (1, channels, 10, 10)
    for kernel, pads in ((1, [0, 0, 0, 0]), (3, [1, 1, 1, 1])):
        model = _conv_model(x_shape, (channels, channels // groups, kernel, kernel),
                            (1, channels, 10, 10), group=groups, pads=pads)
        compiled = _compile_and_compare(model, x_shape, tmp_path)
        convs = [info for name, info in compiled.report["schedule"]["kernels"].items()
                 if "conv2d" in name]
        assert convs and all(info["schedule"] == "rule TiledReduction" for info in convs)


def test_depthwise_conv_is_not_split(tmp_path):
    x_shape = (1, 16, 8, 8)
    model = _conv_model(x_shape, (16, 1, 3, 3), (1, 16, 8, 8), group=16, pads=[1, 1, 1, 1])
    compiled = _compile_and_compare(model, x_shape, tmp_path)
    convs = [n for n in compiled.report["schedule"]["kernels"] if "conv2d" in n]
    assert len(convs) == 1


def test_a_schedule_that_recomputes_the_kernel_is_refused():
    """dlight's CPU Reduction rule puts a [1, 1000] softmax whole inside a parallel loop
    over its 1000 outputs; mcc refuses such a schedule and the next rule takes it."""
    import tvm
    from tvm import te, topi
    from tvm.s_tir import dlight as dl

    from mcc.schedule import _try_rule

    x = te.placeholder((1, 1000), name="x")
    func = te.create_prim_func([x, topi.nn.softmax(x)])
    target = tvm.target.Target("llvm")
    with target:
        assert _try_rule(dl.cpu.Reduction(), func, target) is None
        rows = te.placeholder((64, 1000), name="x")
        assert _try_rule(dl.cpu.Reduction(), te.create_prim_func(
            [rows, topi.nn.softmax(rows)]), target) is not None


@pytest.mark.parametrize("stride", [2, 3])
def test_upsampling_conv_transpose_runs_as_a_matmul(stride, tmp_path):
    """ConvTranspose with kernel = stride (U-Net / DBNet upsampling), bias and relu: one
    tiled matmul, no conv2d_transpose loop nest; outputs match ONNX Runtime."""
    x_shape = (1, 16, 5, 7)
    y_shape = (1, 8, 5 * stride, 7 * stride)
    rng = np.random.default_rng(4)
    model = make_model(
        [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[stride, stride],
                          kernel_shape=[stride, stride]),
         helper.make_node("Relu", ["c"], ["y"])], [("x", x_shape)], [("y", y_shape)],
        [("w", rng.standard_normal((16, 8, stride, stride))), ("b", rng.standard_normal(8))])
    compiled = _compile_and_compare(model, x_shape, tmp_path)
    kernels = compiled.report["schedule"]["kernels"]
    assert not any("conv2d_transpose" in name for name in kernels)
    assert any("matmul" in n and info["schedule"] == "rule TiledReduction"
               for n, info in kernels.items())


def test_overlapping_conv_transpose_is_left_to_tvm(tmp_path):
    x_shape = (1, 4, 5, 5)
    rng = np.random.default_rng(4)
    model = make_model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                          kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        [("x", x_shape)], [("y", (1, 4, 9, 9))], [("w", rng.standard_normal((4, 4, 3, 3)))])
    compiled = _compile_and_compare(model, x_shape, tmp_path)
    assert any("conv2d_transpose" in name for name in compiled.report["schedule"]["kernels"])


def test_activation_matmul_with_odd_columns_is_padded(tmp_path):
    """Attention scores over 197 tokens (ViT): Q @ K^T with both operands activations; the
    K^T copy is zero-padded to whole vectors and the result sliced, matching ONNX Runtime."""
    q_shape, k_shape = (2, 197, 16), (2, 16, 197)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["q", "k"], ["y"])], "scores",
        [helper.make_tensor_value_info("q", 1, q_shape),
         helper.make_tensor_value_info("k", 1, k_shape)],
        [helper.make_tensor_value_info("y", 1, (2, 197, 197))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    compiled = mcc.compile(model)
    assert compiled.report["verify"]["ok"]
    matmul = [info for name, info in compiled.report["schedule"]["kernels"].items()
              if "matmul" in name]
    assert matmul and all(info["schedule"] == "rule TiledReduction" for info in matmul)


def test_a_schedule_vectorised_wider_than_any_register_is_refused():
    """A rule's schedule with a 64-lane float32 vector (what dlight's CPU GEMV rule gave a
    1x1 conv on one pixel; LLVM then took minutes) is refused; 16 lanes are fine."""
    import tvm
    from tvm import te

    from mcc.schedule import _try_rule

    a = te.placeholder((256,), name="a")
    func = te.create_prim_func([a, te.compute((256,), lambda i: a[i] * 2.0, name="b")])

    class Vectorise:
        def __init__(self, lanes):
            self.lanes = lanes

        def apply(self, func, target, tunable):
            sch = tvm.s_tir.Schedule(func)
            (i,) = sch.get_loops(sch.get_sblock("b"))
            sch.vectorize(sch.split(i, factors=[None, self.lanes])[1])
            return sch

    target = tvm.target.Target("llvm")
    assert _try_rule(Vectorise(64), func, target) is None
    assert _try_rule(Vectorise(16), func, target) is not None


def test_a_schedule_that_copies_its_code_over_is_refused():
    """Inlining a long producer into several readers copies it into each: a rule schedule
    with more than MAX_CODE_GROWTH times the kernel's arithmetic is refused (an LSTM's last
    cell fused with a 64-part concatenation took LLVM minutes); the same code is fine."""
    import tvm
    from tvm import te

    from mcc.schedule import MAX_CODE_GROWTH, MIN_CODE_CHECKED, _code_size, _try_rule

    a = te.placeholder((16,), name="a")

    def polynomial(i):  # ~MIN_CODE_CHECKED adds and multiplies
        value = a[i]
        for _ in range(MIN_CODE_CHECKED // 2):
            value = value * 0.5 + 1.0
        return value

    func = te.create_prim_func([a, te.compute((16,), polynomial, name="b")])
    copies = MAX_CODE_GROWTH + 1
    copied = te.create_prim_func([a, te.compute(
        (16,), lambda i: sum(polynomial(i) for _ in range(copies)), name="b")])
    assert _code_size(copied.body) > MAX_CODE_GROWTH * _code_size(func.body)

    class Returns:
        def __init__(self, scheduled):
            self.scheduled = scheduled

        def apply(self, func, target, tunable):
            return tvm.s_tir.Schedule(self.scheduled)

    target = tvm.target.Target("llvm")
    assert _try_rule(Returns(copied), func, target) is None
    assert _try_rule(Returns(func), func, target) is not None
