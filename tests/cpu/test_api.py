"""The Python API: mcc.compile / Compiled / mcc.load / Module."""

import numpy as np
import onnxruntime as ort
import pytest

import mcc
from conftest import TINY_MODELS
from mcc.errors import MccError


def _ort(model, feed):
    session = ort.InferenceSession(model.SerializeToString())
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def test_compile_in_memory_model_run_and_export(tmp_path):
    model = TINY_MODELS["conv_bn"]()
    lines = []
    compiled = mcc.compile(model, progress=lines.append)
    assert [t.name for t in compiled.inputs] == ["x"]
    assert compiled.outputs[0].shape == (1, 8, 12, 12)
    verify = compiled.report["verify"]
    assert verify["ok"] and verify["reference"] == "onnxruntime"
    assert set(compiled.report["stages"]) == {"import", "passes", "schedule", "build", "export",
                                              "verify"}
    assert any(line.startswith("[mcc] verify ") for line in lines)

    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    expected = _ort(model, {"x": x})["y"]
    np.testing.assert_allclose(compiled.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)

    path = compiled.export(tmp_path / "conv_bn.so")
    module = mcc.load(path)
    assert module.metadata == compiled.metadata
    np.testing.assert_allclose(module.run({"x": x})["y"], expected, rtol=1e-4, atol=1e-5)
    assert "conv_bn.so (x: float32[1,3,12,12])" in repr(module)


def test_symbolic_batch_runs_several_sizes_from_one_module(tmp_path):
    model = TINY_MODELS["matmul_softmax"]()
    path = mcc.compile(model).export(tmp_path / "mlp.so")
    module = mcc.load(path)
    assert module.inputs[0].shape == ("batch", 16)
    for batch in (1, 3, 8):
        x = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
        got = module.run({"x": x})["probs"]
        assert got.shape == (batch, 5)
        np.testing.assert_allclose(got, _ort(model, {"x": x})["probs"], rtol=1e-4, atol=1e-6)


def test_input_shapes_fix_a_symbolic_batch():
    compiled = mcc.compile(TINY_MODELS["matmul_softmax"](), input_shapes={"x": (4, 16)})
    assert compiled.inputs[0].shape == (4, 16) and compiled.outputs[0].shape == (4, 5)
    with pytest.raises(MccError, match=r"expected \[4,16\] \(axis 0 must be 4\)"):
        compiled.run({"x": np.zeros((2, 16), np.float32)})


def test_multiple_outputs_are_named():
    compiled = mcc.compile(TINY_MODELS["two_outputs"]())
    x = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    out = compiled.run({"x": x})
    assert list(out) == ["pos", "neg"]
    np.testing.assert_array_equal(out["pos"], np.maximum(x, 0))
    np.testing.assert_array_equal(out["neg"], -x)


def test_wrong_inputs_raise_before_running():
    compiled = mcc.compile(TINY_MODELS["conv"]())
    with pytest.raises(MccError, match="missing input 'x'"):
        compiled.run({})
    with pytest.raises(MccError, match="dtype float64, expected float32"):
        compiled.run({"x": np.zeros((1, 3, 16, 16))})
    with pytest.raises(MccError, match="inputs must be a dict"):
        compiled.run(np.zeros((1, 3, 16, 16), np.float32))


def test_no_verify_and_tolerances_are_recorded():
    compiled = mcc.compile(TINY_MODELS["conv"](), verify=False)
    assert "verify" not in compiled.report
    compiled = mcc.compile(TINY_MODELS["conv"](), rtol=1e-3, atol=1e-2)
    assert compiled.report["verify"]["rtol"] == 1e-3 and compiled.report["verify"]["atol"] == 1e-2


def test_bench_api():
    report = mcc.bench(TINY_MODELS["residual"](), repeat=3)
    assert report.mcc.runs == 3 and report.reference.name == "onnxruntime"
    assert report.ratio > 0


def test_list_targets():
    assert [name for name, _ in mcc.list_targets()][:1] == ["x86"]
