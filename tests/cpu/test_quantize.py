"""int8 quantization: a CNN trained here on scikit-learn's digits, pass structure and
numerics, the int8 kernel against an exact integer reference, and every bad input."""

import numpy as np
import pytest
import tvm
from onnx import helper

import mcc
from conftest import TINY_MODELS, assert_one_line_error, make_model
from mcc.driver.config import CompileConfig
from mcc.errors import MccError
from mcc.frontends import import_model
from mcc.targets import resolve_target

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(onnx path, calibration .npz, test images, test labels, fp32 test accuracy)."""
    data = datasets.load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]  # [1797, 1, 8, 8] in [0, 1]
    labels = data.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x_train, y_train = torch.tensor(images[train]), torch.tensor(labels[train])
    for _ in range(15):
        for batch in torch.randperm(len(train)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x_train[batch]), y_train[batch]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        fp32_acc = float((net(torch.tensor(images[test])).argmax(1).numpy()
                          == labels[test]).mean())
    out = tmp_path_factory.mktemp("digits")
    path = out / "digits.onnx"
    torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["image"],
                      output_names=["logits"], dynamo=False)
    calibration = out / "calibration.npz"
    np.savez(calibration, image=images[train[:64]])  # 64 batch-1 samples of training data
    return path, calibration, images[test], labels[test], fp32_acc


def test_digits_cnn_int8_within_one_point_of_fp32(digits, tmp_path):
    path, calibration, images, labels, fp32_acc = digits
    assert fp32_acc > 0.95
    lines = []
    compiled = mcc.compile(path, quantize="int8", calibration=calibration, progress=lines.append)
    quant = compiled.metadata["quantization"]
    assert quant["int8_ops"] == ["conv2d_0", "conv2d_1", "matmul_0"] and quant["fp32_ops"] == {}
    report = quant["accuracy"]["outputs"]["logits"]
    assert report["cosine"] > 0.99 and report["top1_agreement"] >= 0.95
    # 64 samples: 13 (20%) held out of calibration, and the report comes from those
    assert any("accuracy vs fp32 on 13 held-out sample(s), not used for calibration" in line
               for line in lines)
    assert quant["calibration"]["samples"] == 51 and quant["calibration"]["held_out_samples"] == 13
    assert quant["accuracy"]["data"] == "held-out" and quant["accuracy"]["samples"] == 13
    module = mcc.load(compiled.export(tmp_path / "digits_int8.so"))
    assert module.metadata["quantization"] == quant
    predictions = np.array([module.run({"image": img[None]})["logits"].argmax()
                            for img in images])
    int8_acc = float((predictions == labels).mean())
    assert int8_acc >= fp32_acc - 0.01, (int8_acc, fp32_acc)


def _quantized_relax(model, calibration="random", **options):
    from mcc.driver.quantization import Quantizer

    config = CompileConfig(target=resolve_target(None), quantize="int8",
                           calibration=str(calibration), **options)
    imported = import_model(model, {})
    target = config.target.tvm_target()
    quantizer = Quantizer(imported, config, target, say=lambda m: None)
    return quantizer.run(), quantizer


def _int8_calls(mod):
    """(int8 kernel calls, the dtypes of their data and weight arguments)."""
    from tvm import relax

    calls = []

    def visit(expr):
        if (isinstance(expr, relax.Call) and expr.op.same_as(tvm.ir.Op.get("relax.call_tir"))
                and expr.args[0].name_hint.startswith("mcc_qconv2d")):
            args = expr.args[1].fields
            calls.append((args[0].ty.dtype, args[1].ty.dtype))

    relax.analysis.post_order_visit(mod["main"], visit)
    return calls


def test_quantize_pass_structure_and_exclude(digits):
    from mcc.passes import count_ops

    path = digits[0]
    mod, quantizer = _quantized_relax(path, digits[1])
    assert _int8_calls(mod) == [("uint8", "int8")] * 3
    ops = count_ops(mod)
    assert ops["relax.nn.conv2d"] == 0 and ops["relax.matmul"] == 0
    mod, quantizer = _quantized_relax(path, digits[1], exclude=("matmul", "conv2d_0"))
    assert len(_int8_calls(mod)) == 1
    assert count_ops(mod)["relax.matmul"] == 1 and count_ops(mod)["relax.nn.conv2d"] == 1
    assert quantizer.to_json()["fp32_ops"] == {"conv2d_0": "excluded", "matmul_0": "excluded"}


def test_sites_sharing_an_input_share_one_quantize():
    """Two convolutions reading the same tensor (ResNet's downsample branch beside its
    block's first conv) quantize it once, and the result still matches fp32."""
    from onnx import helper

    from conftest import make_model

    rng = np.random.default_rng(3)
    model = make_model(
        [helper.make_node("Conv", ["x", "w1"], ["a"]),
         helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["a", "b"], ["y"])],
        [("x", [1, 8, 6, 6])], [("y", [1, 16, 6, 6])],
        [("w1", rng.standard_normal((16, 8, 1, 1))), ("w2", rng.standard_normal((16, 8, 3, 3)))],
        "shared_input")
    mod, _ = _quantized_relax(model)
    casts = []

    def visit(expr):
        if (isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op)
                and expr.op.name == "relax.astype" and expr.attrs.dtype == "uint8"):
            casts.append(expr)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    assert len(_int8_calls(mod)) == 2 and len(casts) == 1
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999


def test_max_pool_before_int8_convs_runs_on_quantized_data():
    """conv -> relu -> max pool -> two convs (ResNet's stem): the pool moves after the
    quantize (they commute), so it reads 8-bit data and no fp32 pool remains."""
    from onnx import helper

    from conftest import make_model

    rng = np.random.default_rng(4)
    model = make_model(
        [helper.make_node("Conv", ["x", "w0"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                          pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["p", "w1"], ["a"]),
         helper.make_node("Conv", ["p", "w2"], ["b"], pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["a", "b"], ["y"])],
        [("x", [1, 3, 16, 16])], [("y", [1, 16, 8, 8])],
        [("w0", rng.standard_normal((8, 3, 3, 3))), ("w1", rng.standard_normal((16, 8, 1, 1))),
         ("w2", rng.standard_normal((16, 8, 3, 3)))], "stem")
    mod, _ = _quantized_relax(model)
    pools = []

    def visit(expr):
        if (isinstance(expr, tvm.relax.Call) and isinstance(expr.op, tvm.ir.Op)
                and expr.op.name == "relax.nn.max_pool2d"):
            pools.append(expr.ty.dtype)

    tvm.relax.analysis.post_order_visit(mod["main"], visit)
    assert pools == ["uint8"]
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999


def test_relu6_between_int8_convs_stays_in_nhwc_and_every_kernel_is_scheduled():
    """MobileNetV2's conv -> ReLU6 (Clip) -> depthwise -> ReLU6 -> conv: the Clips are
    imported as scalar max / min kernels TVM's ConvertLayout cannot see through; each sat
    between a transpose to NCHW and one back, and their 24- and 48-channel quantize
    kernels were left unscheduled (int8's 64 lanes). Now: no transposes inside the model,
    no naive kernel, and the module matches fp32."""
    rng = np.random.default_rng(6)
    model = make_model(
        [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1] * 4),
         helper.make_node("Clip", ["a", "lo", "hi"], ["ra"]),
         helper.make_node("Conv", ["ra", "wd"], ["d"], pads=[1] * 4, group=24),
         helper.make_node("Clip", ["d", "lo", "hi"], ["rd"]),
         helper.make_node("Conv", ["rd", "w1"], ["y"])],
        [("x", [1, 8, 12, 12])], [("y", [1, 48, 12, 12])],
        [("w0", rng.standard_normal((24, 8, 3, 3)) * 0.3),
         ("wd", rng.standard_normal((24, 1, 3, 3)) * 0.3),
         ("w1", rng.standard_normal((48, 24, 1, 1)) * 0.3),
         ("lo", np.float32(0)), ("hi", np.float32(6))], "mbv2_block")
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    kernels = compiled.report["schedule"]["kernels"]
    # the boundary transposes only: the input's (fused with its quantize, whose clamp is a
    # maximum / minimum too since relax.clip is raised to them) and the output's
    assert len([k for k in kernels if "transpose" in k]) == 2, sorted(kernels)
    assert compiled.report["schedule"]["naive"] == 0, kernels
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.999


def test_int8_kernel_matches_exact_integer_reference():
    """The scheduled (VNNI on this CPU) kernel vs int64 numpy arithmetic, with padding by the
    zero point, stride 2, channels that are not multiples of 4 / 16, and an unpadded 1x1
    kernel that reads its input in place (no pad copy)."""
    from mcc.passes.int8_kernels import QConvShape, pack_weight, qconv2d_func
    from mcc.schedule.rules.int8 import has_vnni, schedule_kernel

    target = resolve_target(None).tvm_target()
    rng = np.random.default_rng(1)
    for shape in (QConvShape(1, 9, 9, 6, 32, 3, 3, (2, 2), (1, 1, 1, 1), 37),
                  QConvShape(1, 1, 12, 40, 10, 1, 1, (1, 1), (0, 0, 0, 0), 128),
                  QConvShape(1, 5, 7, 32, 24, 1, 1, (1, 1), (0, 0, 0, 0), 9),
                  # rows wider than 28: the 7-pixel x 2-block register tile
                  QConvShape(1, 2, 35, 8, 32, 1, 3, (1, 1), (0, 1, 0, 1), 200)):
        func = schedule_kernel(qconv2d_func(shape), has_vnni(target))
        # this CPU has AVX-512 VNNI: every kernel must really use vpdpbusd (OC is computed
        # in whole 16-channel blocks, so 10 and 24 output channels qualify too)
        assert ("vpdpbusd" in func.script()) == has_vnni(target)
        assert ("mcc_qpad" in func.script()) == shape.needs_pad_block
        lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                          target=target)
        s = shape
        x = rng.integers(0, 256, (s.n, s.h, s.w, s.ic)).astype(np.uint8)
        w = rng.integers(-127, 128, (s.oc, s.kh, s.kw, s.ic)).astype(np.int8)
        bias = rng.integers(-5000, 5000, s.oc).astype(np.int32)
        scale = np.full(s.oc, 0.5, np.float32)
        oh, ow = s.out_hw
        out = tvm.runtime.tensor(np.zeros((s.n, oh, ow, s.oc), np.float32))
        lib["main"](*[tvm.runtime.tensor(a) for a in (x, pack_weight(w), bias, scale)], out)
        pt, pl, pb, pr = s.padding
        xp = np.pad(x.astype(np.int64), ((0, 0), (pt, pb), (pl, pr), (0, 0)),
                    constant_values=s.zero_point)
        acc = np.zeros((s.n, oh, ow, s.oc), np.int64)
        for i in range(s.kh):
            for j in range(s.kw):
                patch = xp[:, i:i + oh * s.stride[0]:s.stride[0], j:j + ow * s.stride[1]:
                           s.stride[1]]
                acc += patch @ w[:, i, j, :].astype(np.int64).T
        np.testing.assert_array_equal(out.numpy(), ((acc + bias) * 0.5).astype(np.float32))


def test_quantized_conv_numerics_and_random_calibration_warning(cli, save_onnx, tmp_path):
    path = save_onnx(TINY_MODELS["conv_bn"]())
    out = tmp_path / "q.so"
    result = cli("compile", path, "-o", out, "--quantize", "int8", "--calibration", "random",
                 "--calibration-method", "percentile", "--per-tensor")
    assert result.exit_code == 0, result.output
    assert "WARNING: calibrating on seeded RANDOM inputs" in result.stderr
    meta = mcc.load(out).metadata["quantization"]
    info = cli("info", out)
    assert ("quantize: int8, 1 ops int8, 0 fp32 (vs fp32 on calibration samples: y cosine 0.9"
            in info.output)  # 4 random samples: too few to hold any out
    assert meta["int8_ops"] == ["conv2d_0"] and meta["weights"] == "int8 symmetric, per tensor"
    assert meta["calibration"]["method"] == "percentile"
    assert meta["accuracy"]["outputs"]["y"]["cosine"] > 0.99


def test_accuracy_budget_reports_what_stays_fp32(digits):
    path, calibration = digits[0], digits[1]
    compiled = mcc.compile(path, quantize="int8", calibration=calibration, accuracy_budget=0.5)
    assert len(compiled.metadata["quantization"]["int8_ops"]) == 3
    with pytest.raises(MccError, match="accuracy-budget 1e-12 cannot be met"):
        mcc.compile(path, quantize="int8", calibration=calibration, accuracy_budget=1e-12)


def test_bad_quantization_inputs(cli, save_onnx, tmp_path):
    conv = save_onnx(TINY_MODELS["conv"](), "conv.onnx")
    out = tmp_path / "never.so"
    result = cli("compile", conv, "-o", out, "--quantize", "int8")
    assert_one_line_error(result, "--quantize int8 needs calibration data", "--calibration")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, image=np.zeros((2, 1, 3, 16, 16), np.float32))
    result = cli("compile", conv, "-o", out, "--quantize", "int8", "--calibration", wrong)
    assert_one_line_error(result, "'image' that is not a model input", "x")
    result = cli("compile", conv, "-o", out, "--quantize", "int8", "--calibration", "random",
                 "--exclude", "conv9")
    assert_one_line_error(result, "--exclude 'conv9' matches no op or node", "conv2d_0")
    result = cli("compile", conv, "-o", out, "--quantize", "int8", "--calibration", "random",
                 "--holdout", "1.5")
    assert_one_line_error(result, "--holdout 1.5 must be a fraction in [0, 1)")
    assert not out.exists() and not list(tmp_path.glob(".never.so*"))


def _ort_qdq(model, path, feeds):
    """ONNX Runtime's own static QDQ quantization of ``model``, calibrated on ``feeds``:
    the baseline benchmarks/int8.py times mcc's int8 against."""
    import onnx
    from int8 import ort_qdq

    fp32 = path.with_suffix(".fp32.onnx")
    onnx.save(model, str(fp32))
    return onnx.load(str(ort_qdq(fp32, feeds, path)))


def test_qdq_model_compiles_to_int8_kernels_matching_onnxruntime(tmp_path):
    import onnxruntime as ort
    from onnx import numpy_helper

    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(8)]
    path = tmp_path / "conv_bn_qdq.onnx"
    qdq = _ort_qdq(TINY_MODELS["conv_bn"](), path, feeds)
    assert any(n.op_type == "DequantizeLinear" for n in qdq.graph.node)
    compiled = mcc.compile(path)  # no --quantize: the model's own scales are used
    quant = compiled.metadata["quantization"]
    assert quant["mode"] == "qdq" and quant["int8_ops"] == ["conv2d_0"]
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    last_dq = [n for n in qdq.graph.node if n.op_type == "DequantizeLinear"][-1]
    out_step = float(inits[last_dq.input[1]])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, 12, 12)).astype(np.float32)
        got = compiled.run({"x": x})["y"]
        ref = session.run(None, {"x": x})[0]
        assert np.abs(got - ref).max() <= out_step * 1.001  # at most one output quantum


def _qlinear_model():
    """QLinearConv (per-channel weights, int32 bias) -> Reshape -> QLinearMatMul, uint8 in/out;
    and ConvInteger and MatMulInteger (per-column weight zero points, symmetric), int32 out."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    consts = {
        "xs": np.array(0.05, np.float32), "xz": np.array(120, np.uint8),
        "w": rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8),
        "ws": (rng.random(16) * 0.01 + 0.001).astype(np.float32), "wz": np.zeros(16, np.int8),
        "ys": np.array(0.1, np.float32), "yz": np.array(10, np.uint8),
        "b": rng.integers(-500, 500, 16).astype(np.int32), "shape": np.array([1, 400]),
        "w2": rng.integers(-127, 128, (400, 10)).astype(np.int8),
        "w2s": np.array(0.02, np.float32), "w2z": np.array(0, np.int8),
        "zs": np.array(0.5, np.float32), "zz": np.array(128, np.uint8),
        "wi": rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8),
        "flat": np.array([1, 800]), "wm": rng.integers(-127, 128, (800, 12)).astype(np.int8),
        "wmz": np.zeros(12, np.int8)}
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
                         ["y"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Reshape", ["y", "shape"], ["yf"]),
        helper.make_node("QLinearMatMul", ["yf", "ys", "yz", "w2", "w2s", "w2z", "zs", "zz"],
                         ["z"]),
        helper.make_node("ConvInteger", ["x", "wi", "xz"], ["c"], pads=[0, 0, 0, 0]),
        helper.make_node("Reshape", ["x", "flat"], ["xf"]),
        helper.make_node("MatMulInteger", ["xf", "wm", "xz", "wmz"], ["m"])]
    graph = helper.make_graph(
        nodes, "qlinear", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8, 10, 10])],
        [helper.make_tensor_value_info("z", TensorProto.UINT8, [1, 10]),
         helper.make_tensor_value_info("c", TensorProto.INT32, [1, 16, 8, 8]),
         helper.make_tensor_value_info("m", TensorProto.INT32, [1, 12])],
        initializer=[nh.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_qlinear_and_conv_integer_import_match_onnxruntime_exactly():
    import onnxruntime as ort

    model = _qlinear_model()
    compiled = mcc.compile(model)
    assert sorted(compiled.metadata["quantization"]["int8_ops"]) == [
        "conv2d_0", "conv2d_1", "matmul_0", "matmul_1"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for seed in range(3):
        x = np.random.default_rng(seed).integers(0, 256, (1, 8, 10, 10)).astype(np.uint8)
        got = compiled.run({"x": x})
        z, c, m = session.run(["z", "c", "m"], {"x": x})
        assert got["z"].dtype == np.uint8 and got["c"].dtype == got["m"].dtype == np.int32
        np.testing.assert_array_equal(got["z"], z)
        np.testing.assert_array_equal(got["c"], c)
        np.testing.assert_array_equal(got["m"], m)


def test_fp16_mixed_precision_is_close_to_fp32():
    compiled = mcc.compile(TINY_MODELS["conv_bn"](), quantize="fp16")
    assert compiled.metadata["quantization"] == {"mode": "fp16", "accumulation": "float32"}
    errors = compiled.report["verify"]["outputs"]["y"]
    assert 0 < errors["max_abs"] < 0.1  # fp16 rounding: not bit-exact, but close


def test_int8_options_without_quantize_are_refused(cli, save_onnx, tmp_path):
    path = save_onnx(TINY_MODELS["conv"]())
    result = cli("compile", path, "-o", tmp_path / "x.so", "--exclude", "conv2d")
    assert_one_line_error(result, "apply to --precision int8 or auto")


def test_int8_without_vnni_uses_the_generic_schedule():
    from mcc.schedule.rules.int8 import has_vnni

    target = resolve_target("x86-avx2")
    assert not has_vnni(target.tvm_target())
    compiled = mcc.compile(TINY_MODELS["conv_bn"](), target="x86-avx2", quantize="int8",
                           calibration="random")
    assert compiled.metadata["quantization"]["accuracy"]["outputs"]["y"]["cosine"] > 0.99


def test_saving_and_loading_an_int8_module_prints_no_tvm_scope_lines(capfd, tmp_path):
    """TVM logs a 'Scope Saving:' / 'Scope Loaded:' warning per constant of an int8 module;
    mcc's export and load drop them (mcc.runtime.tvm_log)."""
    compiled = mcc.compile(TINY_MODELS["conv_bn"](), quantize="int8", calibration="random",
                           verify=False)
    capfd.readouterr()
    mcc.load(compiled.export(tmp_path / "q.so"))
    assert "Scope" not in capfd.readouterr().err


def test_model_with_two_outputs_quantizes_and_reports_both():
    """Calibration instruments the model, whose output tuple then sits inside a tuple."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1] * 4),
             helper.make_node("Relu", ["a"], ["y1"]),
             helper.make_node("Conv", ["y1", "w2"], ["y2"], pads=[1] * 4)]
    model = make_model(nodes, [("x", [1, 8, 8, 8])], [("y1", [1, 16, 8, 8]), ("y2", [1, 16, 8, 8])],
                       [("w1", rng.standard_normal((16, 8, 3, 3)) * 0.2),
                        ("w2", rng.standard_normal((16, 16, 3, 3)) * 0.2)], "two_outputs")
    compiled = mcc.compile(model, quantize="int8", calibration="random")
    outputs = compiled.report["quantization"]["accuracy"]["outputs"]
    assert set(outputs) == {"y1", "y2"}
    assert all(o["cosine"] > 0.99 for o in outputs.values())
