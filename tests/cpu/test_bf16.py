"""--precision bf16: conv2d / constant-weight matmul as AVX-512 BF16 (vdpbf16ps) kernels.

Structure of the pass, numerics against ONNX Runtime fp32 (cosine >= 0.999), the
instruction in the built module, the refusal on a target without bf16, the CLI flag."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from onnx import helper

import mcc
from conftest import assert_one_line_error, make_model
from mcc.errors import MccError
from mcc.frontends import import_model
from mcc.targets import resolve_target


def _host_has_bf16() -> bool:
    from mcc.schedule.rules.bf16 import has_bf16

    try:
        return has_bf16(resolve_target(None).tvm_target())
    except Exception:  # noqa: BLE001
        return False


needs_bf16 = pytest.mark.skipif(not _host_has_bf16(),
                                reason="this CPU lacks AVX-512 BF16 (avx512bf16)")


def _rng():
    return np.random.default_rng(7)


def conv_dense_model():
    """conv 3x3 + relu, depthwise 3x3, conv 1x1 stride 2 (40 ch: not a multiple of 16),
    flatten, matmul + bias, softmax."""
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Conv", ["r", "wd", "bd"], ["d"], group=24, pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["d", "w2"], ["e"], strides=[2, 2]),
         helper.make_node("Flatten", ["e"], ["f"]),
         helper.make_node("MatMul", ["f", "wm"], ["m"]),
         helper.make_node("Add", ["m", "bm"], ["l"]),
         helper.make_node("Softmax", ["l"], ["y"], axis=-1)],
        [("x", [1, 3, 16, 16])], [("y", [1, 10])],
        [("w1", rng.normal(size=(24, 3, 3, 3)) * 0.3), ("b1", rng.normal(size=24) * 0.1),
         ("wd", rng.normal(size=(24, 1, 3, 3)) * 0.3), ("bd", rng.normal(size=24) * 0.1),
         ("w2", rng.normal(size=(40, 24, 1, 1)) * 0.2),
         ("wm", rng.normal(size=(40 * 8 * 8, 10)) * 0.05), ("bm", rng.normal(size=10))])


def attention_block_model(seq=32, hidden=64, ffn=128):
    """q/k/v projections, softmax(q k^T) v, output projection + residual, layer norm, GELU-ish
    FFN: the matmuls by constants are bf16 sites, the two activation matmuls are not."""
    rng = _rng()
    s = 1.0 / np.sqrt(hidden)
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["sc"]),
        helper.make_node("Mul", ["sc", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["a"]),
        helper.make_node("MatMul", ["a", "wo"], ["o"]),
        helper.make_node("Add", ["o", "x"], ["res"]),
        helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["ln"], axis=-1),
        helper.make_node("MatMul", ["ln", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["f"]),
        helper.make_node("Add", ["f", "ln"], ["y"]),
    ]
    inits = [("wq", rng.normal(size=(hidden, hidden)) * s),
             ("wk", rng.normal(size=(hidden, hidden)) * s),
             ("wv", rng.normal(size=(hidden, hidden)) * s),
             ("wo", rng.normal(size=(hidden, hidden)) * s),
             ("scale", np.array(s)),
             ("gamma", 1 + 0.1 * rng.normal(size=hidden)), ("beta", 0.1 * rng.normal(size=hidden)),
             ("w1", rng.normal(size=(hidden, ffn)) * s), ("b1", 0.1 * rng.normal(size=ffn)),
             ("w2", rng.normal(size=(ffn, hidden)) / np.sqrt(ffn))]
    return make_model(nodes, [("x", [1, seq, hidden])], [("y", [1, seq, hidden])], inits)


def residual_block_model(side="Add"):
    """conv 1x1 + relu (a) -> conv 3x3 + relu (b) -> conv 1x1 (c) -> c + a -> relu: b is
    handed over in bf16 (read by one bf16 kernel), a too (a bf16 kernel and the residual
    add, which reads it widened). ``side="MaxPool"``: a second output MaxPool(a) instead of
    the residual add, so a stays fp32."""
    rng = _rng()
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"]),
             helper.make_node("Relu", ["c0"], ["a"]),
             helper.make_node("Conv", ["a", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"])]
    outputs = [("y", [1, 32, 8, 8])]
    if side == "Add":
        nodes += [helper.make_node("Add", ["c", "a"], ["s"]),
                  helper.make_node("Relu", ["s"], ["y"])]
    else:
        nodes += [helper.make_node("Relu", ["c"], ["y"]),
                  helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
        outputs.append(("p", [1, 32, 4, 4]))
    return make_model(
        nodes, [("x", [1, 16, 8, 8])], outputs,
        [("w0", rng.normal(size=(32, 16, 1, 1)) * 0.3), ("b0", rng.normal(size=32) * 0.1),
         ("w1", rng.normal(size=(16, 32, 3, 3)) * 0.1), ("b1", rng.normal(size=16) * 0.1),
         ("w2", rng.normal(size=(32, 16, 1, 1)) * 0.3)])


def inverted_residual_model():
    """MobileNetV2's block: 1x1 expand + clip, 3x3 depthwise (stride 2, 32 channels) +
    clip, 1x1 project: three bf16 kernels, bf16 between them."""
    rng = _rng()
    return make_model(
        [helper.make_node("Conv", ["x", "we", "be"], ["e"]),
         helper.make_node("Clip", ["e", "lo", "hi"], ["er"]),
         helper.make_node("Conv", ["er", "wd", "bd"], ["d"], group=32, strides=[2, 2],
                          pads=[0, 0, 1, 1]),
         helper.make_node("Clip", ["d", "lo", "hi"], ["dr"]),
         helper.make_node("Conv", ["dr", "wp"], ["y"])],
        [("x", [1, 8, 10, 10])], [("y", [1, 16, 5, 5])],
        [("we", rng.normal(size=(32, 8, 1, 1)) * 0.3), ("be", rng.normal(size=32) * 0.1),
         ("wd", rng.normal(size=(32, 1, 3, 3)) * 0.3), ("bd", rng.normal(size=32) * 0.1),
         ("wp", rng.normal(size=(16, 32, 1, 1)) * 0.2), ("lo", np.array(0.0)),
         ("hi", np.array(6.0))])


def _after_bf16_pass(model):
    """The module right after mcc.Bf16 (graph passes up to it), and the pass's report."""
    from mcc.build.pipeline import graph_passes
    from mcc.passes.bf16 import Bf16

    target = resolve_target(None).tvm_target()
    mod = import_model(model, {}).mod
    with target:
        for _name, graph_pass in graph_passes("NHWC", strict_layout=False, winograd=True,
                                             bf16=True):
            mod = graph_pass(mod)
            if isinstance(graph_pass, Bf16):
                return mod, graph_pass.report
    raise AssertionError("mcc.Bf16 not in the pipeline")


def _ops(mod):
    names = []

    def visit(expr):
        if isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op):
            names.append(expr.op.name)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return names


def test_pass_structure_conv_dense():
    from mcc.passes.bf16 import count_bf16_kernels

    mod, report = _after_bf16_pass(conv_dense_model())
    assert report.converted == ["conv2d_0", "conv2d_2", "matmul_0"]
    assert "depthwise" in report.skipped["conv2d_1"]  # 24 channels: stays fp32
    assert count_bf16_kernels(mod) == 3
    ops = _ops(mod)
    assert ops.count("relax.nn.conv2d") == 1  # the depthwise one
    assert "relax.nn.softmax" in ops and "relax.matmul" not in ops
    weights = [c for c in _constants(mod) if c.dtype == "uint16"]
    assert len(weights) == 3
    # [OC/16, KH, KW, IC/2, 16, 2]; 3 input channels: a kernel row's 3 taps one run of 9 + 1
    assert tuple(weights[0].shape) == (2, 3, 1, 5, 16, 2)


def test_pass_structure_attention_block():
    mod, report = _after_bf16_pass(attention_block_model())
    # q, k, v, out, ffn1, ffn2 by constants; q k^T and p v are activation x activation
    assert len(report.converted) == 6
    assert sorted(report.skipped.values()) == ["weight is not a constant"] * 2
    assert _ops(mod).count("relax.matmul") == 2


def _call_tir_targets(mod):
    names = []

    def visit(expr):
        if (isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op)
                and expr.op.name == "relax.call_tir"):
            names.append(expr.args[0].name_hint)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return names


def test_bf16_handoffs_residual_block():
    """Activations bf16 kernels read are stored as bf16 by their producers: b (read by
    one kernel) and a (a kernel and the residual add, which widens it back to fp32)."""
    from mcc.passes.bf16 import FROM_BF16, TO_BF16

    mod, report = _after_bf16_pass(residual_block_model())
    assert report.converted == ["conv2d_0", "conv2d_1", "conv2d_2"]
    assert report.bf16_inputs == ["conv2d_1", "conv2d_2"]  # conv2d_0 reads the input
    calls = _call_tir_targets(mod)
    assert sum(n.startswith(TO_BF16) for n in calls) == 2
    assert sum(n.startswith(FROM_BF16) for n in calls) == 1  # the residual add's read


def test_no_bf16_handoff_to_a_non_elementwise_reader():
    """a also feeds a MaxPool (not elementwise): it stays fp32; b is still handed over."""
    mod, report = _after_bf16_pass(residual_block_model("MaxPool"))
    assert report.bf16_inputs == ["conv2d_2"]


def test_depthwise_site_between_bf16_handoffs():
    from mcc.passes.bf16 import count_bf16_kernels

    mod, report = _after_bf16_pass(inverted_residual_model())
    assert report.converted == ["conv2d_0", "conv2d_1", "conv2d_2"]
    assert report.bf16_inputs == ["conv2d_1", "conv2d_2"]
    assert count_bf16_kernels(mod) == 3 and "relax.nn.conv2d" not in _ops(mod)


def test_dense_kernel_writes_the_matmul_shape():
    """A bf16 dense layer writes [.., seq, N] itself (no reshape after it, which kept its
    bias and activation out of the kernel): only the inputs are reshaped."""
    from mcc.passes.bf16 import KERNEL_NAME

    mod, report = _after_bf16_pass(attention_block_model())
    var2val = tvm.relax.analysis.get_var2val(mod["main"])
    reshaped = [var2val.get(call.args[0]) for call in var2val.values()
                if isinstance(call, tvm.relax.Call) and getattr(call.op, "name", "") ==
                "relax.reshape"]
    kernels = [v for v in reshaped if isinstance(v, tvm.relax.Call) and len(v.args) > 1
               and isinstance(v.args[0], tvm.ir.GlobalVar)
               and v.args[0].name_hint.startswith(KERNEL_NAME)]
    assert len(reshaped) >= len(report.converted) and not kernels
    # the ffn's relu(x w1 + b1) reaches w2 in bf16 (through the importer's reshape)
    assert report.bf16_inputs == ["matmul_7"]


def _constants(mod):
    found = []

    def visit(expr):
        if isinstance(expr, tvm.ir.GenericConst):
            found.append(expr.value)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    return found


def test_bf16_rounding_matches_ml_dtypes():
    from mcc.passes.bf16_bits import bf16_round, to_bf16_bits

    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(0).normal(size=4096).astype(np.float32) * 1e3
    x[:4] = [0.0, -0.0, np.inf, -np.inf]
    assert (to_bf16_bits(x) == x.astype(ml_dtypes.bfloat16).view(np.uint16)).all()
    assert np.isnan(bf16_round(np.array([np.nan], np.float32))).all()


@needs_bf16
@pytest.mark.parametrize("build", [conv_dense_model, attention_block_model])
def test_bf16_compile_matches_onnxruntime_fp32(build, tmp_path):
    compiled = mcc.compile(build(), precision="bf16")
    verify = compiled.report["verify"]
    assert verify["ok"] and verify["cosine_min"] == 0.999
    assert all(c >= 0.999 for c in verify["cosine"].values()), verify
    precision = compiled.metadata["precision"]
    assert precision["mode"] == "bf16"
    assert precision["bf16_kernels"] == (3 if build is conv_dense_model else 6)
    if build is conv_dense_model:
        assert precision["bf16_ops"] == ["conv2d_0", "conv2d_2", "matmul_0"]
        assert list(precision["fp32_ops"]) == ["conv2d_1"]  # depthwise
    else:
        assert len(precision["fp32_ops"]) == 2  # q k^T, p v
    # the module itself: its own run against ORT on a second feed
    import onnxruntime as ort

    model = build()
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(3).normal(size=compiled.inputs[0].shape).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = compiled.run({"x": x})["y"]
    cos = float((got.ravel() @ want.ravel())
                / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cos >= 0.999


@needs_bf16
@pytest.mark.parametrize("build", [residual_block_model, inverted_residual_model])
def test_bf16_handoffs_compile_matches_onnxruntime_fp32(build, tmp_path):
    import onnxruntime as ort

    model = build()
    compiled = mcc.compile(model, precision="bf16")
    assert compiled.report["verify"]["ok"]
    assert compiled.metadata["precision"]["bf16_kernels"] == 3
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.random.default_rng(3).normal(size=compiled.inputs[0].shape).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = compiled.run({"x": x})["y"]
    cos = float((got.ravel() @ want.ravel())
                / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cos >= 0.999


@needs_bf16
def test_built_module_uses_vdpbf16ps(tmp_path):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    compiled = mcc.compile(conv_dense_model(), precision="bf16")
    so = compiled.export(tmp_path / "m.so")
    asm = subprocess.run([objdump, "-d", str(so)], capture_output=True, text=True,
                         check=True).stdout
    assert "vdpbf16ps" in asm
    fp32 = mcc.compile(conv_dense_model()).export(tmp_path / "f.so")
    asm = subprocess.run([objdump, "-d", str(fp32)], capture_output=True, text=True,
                         check=True).stdout
    assert "vdpbf16ps" not in asm


def test_bf16_refused_on_a_target_without_it():
    with pytest.raises(MccError, match="x86-avx2.*avx512bf16"):
        mcc.compile(conv_dense_model(), target="x86-avx2", precision="bf16")
    with pytest.raises(MccError, match="exclude each other"):
        mcc.compile(conv_dense_model(), precision="bf16", quantize="int8")
    with pytest.raises(MccError, match="unknown precision"):
        mcc.compile(conv_dense_model(), precision="fp8")


def test_cli_precision_flag_error(cli, save_onnx, tmp_path):
    path = save_onnx(conv_dense_model())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--target", "x86-avx2",
                 "--precision", "bf16")
    assert_one_line_error(result, "x86-avx2", "avx512bf16")


@needs_bf16
def test_cli_precision_bf16(cli, save_onnx, tmp_path):
    path = save_onnx(conv_dense_model())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--precision", "bf16")
    assert result.exit_code == 0, result.output
    assert "min cosine" in result.stderr
    info = cli("info", tmp_path / "m.so")
    assert info.exit_code == 0
    assert "precision: bf16, 3 bf16 kernels, 1 conv/matmul ops fp32" in info.output


@needs_bf16
@pytest.mark.parametrize("bf16_input", [False, True])
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("geometry", [
    (1, 14, 14, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1)),  # 3x3, pad 1
    (1, 9, 9, 5, 24, 3, 3, (2, 2), (0, 0, 1, 1)),  # odd IC, OC 24, stride 2, uneven pad
    (1, 1, 33, 48, 40, 1, 1, (1, 1), (0, 0, 0, 0)),  # a dense layer: 33 rows
    (1, 3, 16, 24, 144, 1, 1, (1, 1), (0, 0, 0, 0)),  # 9 blocks: tiles of 8 x 3
])
def test_kernel_schedule_matches_numpy(bf16_input, fuse, geometry):
    """The rule's fused and unfused (fallback) forms against numpy on bf16-rounded data;
    ``bf16_input``: the kernel reads bf16 bits (a handoff; 1x1 convs have no pad step)."""
    from mcc.passes.bf16 import BConvShape, bconv2d_func, pack_weight
    from mcc.passes.bf16_bits import bf16_round, to_bf16_bits
    from mcc.schedule.rules.bf16 import schedule_kernel
    from mcc.schedule.rules.bf16_isa import X86

    shape = BConvShape(*geometry)
    func = schedule_kernel(bconv2d_func(shape, bf16_input), fuse=fuse)
    assert X86.func in func.script()
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=resolve_target(None).tvm_target())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(shape.n, shape.h, shape.w, shape.ic)).astype(np.float32)
    w = rng.normal(size=(shape.oc, shape.kh, shape.kw, shape.ic)).astype(np.float32)
    oh, ow = shape.out_hw
    out = tvm.runtime.tensor(np.zeros((shape.n, oh, ow, shape.oc), np.float32))
    lib["main"](tvm.runtime.tensor(to_bf16_bits(x) if bf16_input else x),
                tvm.runtime.tensor(pack_weight(w)), out)
    pt, pl, pb, pr = shape.padding
    xp = np.pad(bf16_round(x).astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    wb = bf16_round(w).astype(np.float64)
    sh, sw = shape.stride
    want = np.zeros((shape.n, oh, ow, shape.oc))
    for i in range(shape.kh):
        for j in range(shape.kw):
            window = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
            want += np.einsum("nhwc,oc->nhwo", window, wb[:, i, j, :])
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


def test_odd_channel_taps_read_as_one_run_per_kernel_row():
    """A 3-channel stem: each kernel row's 3 pixels x 3 channels are one run of 9 (+1
    zero) bf16 channels, 30 products a pixel (15 vdpbf16ps per 16 channels) where padding
    each tap to 4 channels made 36; the pad step writes whole rows (vectorizable)."""
    import tvm_ffi
    from tvm.s_tir import SBlock

    from mcc.passes.bf16 import CONV_BLOCK, PAD_BLOCK, BConvShape, bconv2d_func, pack_weight

    shape = BConvShape(1, 9, 9, 3, 16, 3, 3, (2, 2), (1, 1, 1, 1))
    found = []
    tvm_ffi.structural_walk(bconv2d_func(shape).body, (SBlock, found.append), order="post")
    blocks = {b.name_hint: b for b in found}
    reduce = [int(v.dom.extent) for v in blocks[CONV_BLOCK].iter_vars if v.iter_type == 2]
    assert int(np.prod(reduce)) == 30
    pad = blocks[PAD_BLOCK].iter_vars
    assert len(pad) == 3 and int(pad[-1].dom.extent) % 16 == 0
    assert pack_weight(np.zeros((16, 3, 3, 3), np.float32)).shape == (1, 3, 1, 5, 16, 2)


def test_x86_tile_of_an_odd_block_count():
    """9 or 15 16-channel blocks: 3 (or 5) blocks a tile and at most 24 accumulators, not
    1 block (a weight vector and a broadcast per instruction); even counts keep 14 x 2."""
    from mcc.schedule.rules.bf16_isa import X86

    assert X86.tile(56, 9) == (8, 3)
    assert X86.tile(28, 9) == (7, 3)
    assert X86.tile(14, 15) == (7, 3)
    assert X86.tile(20, 5) == (4, 5)
    assert X86.tile(56, 6) == (14, 2)
    assert X86.tile(56, 7) == (14, 1)  # no divisor of 3 or 5: as before


@needs_bf16
@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("bf16_input", [False, True])
@pytest.mark.parametrize("geometry", [
    (1, 12, 12, 32, 3, 3, (2, 2), (0, 0, 1, 1)),  # stride 2, uneven pad
    (1, 7, 9, 16, 3, 3, (1, 1), (1, 1, 1, 1)),  # rows of 9: tiles of 3
])
def test_depthwise_kernel_matches_numpy(geometry, bf16_input, fuse):
    from mcc.passes.bf16_bits import bf16_round, to_bf16_bits
    from mcc.passes.bf16_depthwise import DwShape, dwconv_func
    from mcc.schedule.rules.bf16 import schedule_depthwise

    s = DwShape(*geometry)
    func = schedule_depthwise(dwconv_func(s, bf16_input), fuse=fuse)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=resolve_target(None).tvm_target())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(s.n, s.h, s.w, s.c)).astype(np.float32)
    w = rng.normal(size=(s.kh, s.kw, s.c)).astype(np.float32)
    oh, ow = s.out_hw
    out = tvm.runtime.tensor(np.zeros((s.n, oh, ow, s.c), np.float32))
    lib["main"](tvm.runtime.tensor(to_bf16_bits(x) if bf16_input else x),
                tvm.runtime.tensor(w), out)
    pt, pl, pb, pr = s.padding
    xp = np.pad(bf16_round(x).astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    sh, sw = s.stride
    want = sum(xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] * w[i, j]
               for i in range(s.kh) for j in range(s.kw))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fuse", [True, False])
def test_depthwise_bf16_input_is_read_in_place(fuse):
    """A bf16 input is not copied into a padded buffer (the padding is a select on each
    load) and every tap is unrolled, so LLVM loads each input vector once per tile, and
    the epilogue is unrolled over the tile; an fp32 input is still padded and rounded per
    output row."""
    from mcc.passes.bf16_depthwise import DW_PAD_BLOCK, DwShape, dwconv_func
    from mcc.schedule.rules.bf16 import schedule_depthwise

    s = DwShape(1, 12, 12, 32, 3, 3, (1, 1), (1, 1, 1, 1))
    script = schedule_depthwise(dwconv_func(s, True), fuse=fuse).script()
    assert f'"{DW_PAD_BLOCK}"' not in script
    assert "rkh in T.unroll" in script and "rkw in T.unroll" in script
    if fuse:  # the epilogue reads the tile at constant indices: registers, not memory
        assert "ax0 in T.unroll" in script
    assert f'"{DW_PAD_BLOCK}"' in schedule_depthwise(dwconv_func(s, False), fuse=fuse).script()


@needs_bf16
@pytest.mark.parametrize("build", [conv_dense_model, attention_block_model,
                                   residual_block_model, inverted_residual_model])
def test_every_bf16_kernel_is_tensorized(build):
    """The rule schedules every fused bf16 kernel with vdpbf16ps (none left to the slow
    default rules), whatever FuseOps put in its epilogue."""
    from mcc import compile_config
    from mcc.build.lower import run_passes
    from mcc.passes.bf16 import bf16_kernel_funcs
    from mcc.schedule.rules.bf16 import schedule_bf16
    from mcc.schedule.rules.bf16_isa import X86

    config = compile_config(precision="bf16")
    target = config.target.tvm_target()
    mod, _ = run_passes(import_model(build(), {}).mod, target, layout=config.layout, bf16=True)
    names = bf16_kernel_funcs(mod)
    assert names
    with target:
        mod = schedule_bf16(tvm.relax.transform.AttachAttrLayoutFreeBuffers()(mod), target)
    from mcc.passes.bf16_depthwise import DW_BLOCK

    funcs = {gv.name_hint: f for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)}
    depthwise = {n for n, f in funcs.items() if f'"{DW_BLOCK}' in f.script()}
    tensorized = {n for n, f in funcs.items() if X86.func in f.script()}
    assert len(tensorized) == len(names) - len(depthwise), sorted(names)
    assert all(funcs[n].attrs["tirx.is_scheduled"] for n in depthwise)  # by the bf16 rule
