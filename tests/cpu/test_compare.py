"""mcc compare end to end on tiny models: fp32 shows no error anywhere, int8 points at a
quantized layer, int / bool tensors compare exactly, a .so compares its outputs, and bad
input (a feed, a selection, a .so against another model) is one line."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import mcc
from conftest import assert_one_line_error, graph_model, make_model, two_output_model

QUANTIZABLE = {"Conv", "MatMul", "Gemm"}


def conv_net():
    """conv -> relu -> conv -> relu -> pool -> flatten -> matmul, seeded weights."""
    rng = np.random.default_rng(0)
    return make_model(
        [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
         helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
         helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, name="conv2"),
         helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
         helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="pool"),
         helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
         helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc")],
        [("x", [1, 3, 16, 16])], [("y", [1, 4])],
        [("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), ("b1", rng.standard_normal(8) * 0.1),
         ("w2", rng.standard_normal((8, 8, 3, 3)) * 0.2), ("b2", rng.standard_normal(8) * 0.1),
         ("wf", rng.standard_normal((8, 4)) * 0.3)], "conv_net")


ORDER = ["c1", "r1", "c2", "r2", "g", "f", "y"]


def test_fp32_compare_shows_no_error_in_graph_order(save_onnx, cli):
    path = save_onnx(conv_net(), "net.onnx")
    result = cli("compare", path, "--json", "--layout", "NCHW")
    assert result.exit_code == 0, result.output
    assert "no --inputs given: comparing on seeded random inputs (seed 0)" in result.stderr
    report = json.loads(result.stdout)
    assert [d["tensor"] for d in report["layers"]] == ORDER
    assert [d["index"] for d in report["layers"]] == list(range(len(ORDER)))
    assert report["culprit"] is None and report["per_layer"] is True
    assert report["reference"] == "onnxruntime fp32"
    for d in report["layers"]:
        assert d["rel_err"] < 1e-5 and d["cosine"] > 0.99999, d
        assert d["shape"] and d["dtype"] == "float32"


def test_int8_compare_points_at_a_quantized_layer(save_onnx, cli, tmp_path):
    path = save_onnx(conv_net(), "net.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "cal.npz", x=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    result = cli("compare", path, "--quantize", "int8", "--calibration", tmp_path / "cal.npz",
                 "--inputs", tmp_path / "in.npz", "--layout", "NHWC", "--top", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "quantize int8" in lines[0] and f"on '{tmp_path / 'in.npz'}'" in lines[0]
    culprit = next(line for line in lines if line.startswith("culprit: "))
    assert culprit.split()[2] in QUANTIZABLE, culprit
    assert "3 conv2d/matmul ops in int8" in result.stdout
    rows = lines[lines.index(next(ln for ln in lines if ln.startswith("worst 3"))) + 2:]
    assert len(rows) == 3 and rows[0].split()[1] in QUANTIZABLE

    report = mcc.compare(path, inputs=str(tmp_path / "in.npz"), quantize="int8",
                         calibration=str(tmp_path / "cal.npz"), layout="NHWC",
                         reference="fp32", layers=("Conv",))
    assert report.reference == "mcc fp32"
    assert [d.tensor for d in report.layers] == ["c1", "c2", "y"]  # the output always
    assert all(d.rel_err > 1e-4 for d in report.layers)  # int8 loses something everywhere
    assert report.culprit is not None and report.culprit.op == "Conv"
    report.threshold = 1.0  # a loss nothing reaches
    assert report.culprit is None and "0 of 3 layers exceed" in "\n".join(report.lines())


def _host_has_bf16() -> bool:
    from mcc.schedule.rules.bf16 import has_bf16
    from mcc.targets import resolve_target

    try:
        return has_bf16(resolve_target(None).tvm_target())
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _host_has_bf16(), reason="this CPU lacks AVX-512 BF16 (avx512bf16)")
def test_bf16_compare_points_at_a_bf16_layer():
    report = mcc.compare(conv_net(), precision="bf16")
    assert report.culprit is not None and report.culprit.op in QUANTIZABLE
    assert 1e-4 < max(d.rel_err for d in report.layers) < 0.05  # bf16 rounding, not garbage
    assert "precision bf16" in report.build


def test_int_and_bool_tensors_compare_exactly():
    model = graph_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Greater", ["r", "half"], ["big"]),
         helper.make_node("Cast", ["big"], ["bigf"], to=TensorProto.FLOAT),
         helper.make_node("ArgMax", ["r"], ["idx"], axis=1),
         helper.make_node("Mul", ["r", "bigf"], ["y"])],
        [("x", TensorProto.FLOAT, [2, 6])],
        [("y", TensorProto.FLOAT, [2, 6]), ("idx", TensorProto.INT64, [2, 1])],
        [("half", np.array(0.5, np.float32))])
    report = mcc.compare(model, inputs={  # an onnx.ModelProto works too
        "x": np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)})
    by_name = {d.tensor: d for d in report.layers}
    assert set(by_name) == {"r", "big", "bigf", "idx", "y"}
    assert by_name["big"].exact and by_name["big"].dtype == "bool"
    assert by_name["idx"].exact and by_name["idx"].dtype == "int64"
    assert all(d.rel_err == 0 for d in (by_name["big"], by_name["idx"]))
    assert report.culprit is None


def test_bound_inputs_are_bound_for_both_runtimes():
    model = graph_model(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("ReduceSum", ["r", "axes"], ["y"], keepdims=0)],
        [("x", TensorProto.FLOAT, [2, 3]), ("axes", TensorProto.INT64, [1])],
        [("y", TensorProto.FLOAT, [2])])
    report = mcc.compare(model, bind={"axes": [1]})
    assert [d.tensor for d in report.layers] == ["r", "y"] and report.culprit is None
    assert "bind" in report.build
    with pytest.raises(mcc.MccError, match="'axes' is not an input"):
        mcc.compare(model, bind={"axes": [1]}, inputs={"x": np.zeros((2, 3), np.float32),
                                                       "axes": np.array([1])})


def test_compiled_module_compares_outputs_against_its_source(save_onnx, cli, tmp_path):
    path = save_onnx(two_output_model(), "two.onnx")
    so = tmp_path / "two.so"
    assert cli("compile", path, "-o", so).exit_code == 0
    result = cli("compare", so, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["per_layer"] is False and report["culprit"] is None
    assert [d["tensor"] for d in report["layers"]] == ["pos", "neg"]
    assert all(d["rel_err"] == 0 for d in report["layers"])
    assert "only its outputs are compared" in " ".join(report["notes"])

    other = save_onnx(make_model([helper.make_node("Relu", ["a"], ["b"])], [("a", [2, 3])],
                                 [("b", [2, 3])]), "other.onnx")
    assert_one_line_error(cli("compare", so, "--reference-model", other), f"'{other}'",
                          "has inputs a", "not the model it was built from")
    assert_one_line_error(cli("compare", so, "--quantize", "int8"),
                          "is a compiled module: quantize applies to an ONNX model only")
    assert_one_line_error(cli("compare", so, "--reference-model", tmp_path / "gone.onnx"),
                          "reference model", "gone.onnx' not found")


@pytest.mark.parametrize("arrays, fragments", [
    ({"image": np.zeros((1, 3, 16, 16), np.float32)}, ["'image' is not an input", "x"]),
    ({}, ["no array for input 'x'"]),
    ({"x": np.zeros((1, 3, 8, 8), np.float32)}, ["input 'x' has shape [1, 3, 8, 8]"]),
])
def test_bad_inputs_name_the_input(save_onnx, cli, tmp_path, arrays, fragments):
    path = save_onnx(conv_net(), "net.onnx")
    np.savez(tmp_path / "in.npz", **arrays)
    result = cli("compare", path, "--inputs", tmp_path / "in.npz", "--layout", "NCHW",
                 "--layers", "Conv")
    assert_one_line_error(result, *fragments)
    assert result.exit_code == 1


def test_bad_options_are_one_line(save_onnx, cli, tmp_path):
    path = save_onnx(conv_net(), "net.onnx")
    assert_one_line_error(cli("compare", path, "--layers", "Conv,Nope"), "--layers 'Nope'")
    assert_one_line_error(cli("compare", path, "--inputs", tmp_path / "none.npz"),
                          "none.npz' not found")
    assert_one_line_error(cli("compare", path, "--reference-model", path),
                          "--reference-model) is for a compiled .so")
    assert_one_line_error(cli("compare", tmp_path / "missing.onnx"), "missing.onnx")
    assert cli("compare", path, "--no-verify").exit_code == 2  # not a compare flag (click)
