"""--precision auto on a tiny conv / dense net: the candidates built and reported, the choice
under injected timings (never this machine's speed), and the chosen module's accuracy
against an fp32 compile within the budget."""

import json

import numpy as np
import pytest
from test_bf16 import _host_has_bf16, conv_dense_model, needs_bf16

import mcc
from conftest import TINY_MODELS, assert_one_line_error
from mcc.driver import precision_choice
from mcc.driver.quantization import measure_accuracy


@pytest.fixture
def samples(tmp_path):
    """12 seeded samples: 2 held out (int8's default split), 10 calibrate."""
    path = tmp_path / "samples.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(12, 1, 3, 16, 16)).astype(np.float32))
    return path


@pytest.fixture
def timings(monkeypatch):
    """timings(fp32=ms, ...): what the candidates' timing reports (default: 1 ms each)."""
    given = {}

    def fake(runs):
        for run in runs.values():
            run()  # the candidates are runnable
        return {name: given.get(name, 1.0) for name in runs}

    monkeypatch.setattr(precision_choice, "time_candidates", fake)
    return given.update


def _loss_vs_fp32(compiled, fp32, path) -> float:
    with np.load(path) as data:
        feeds = [{"x": x} for x in data["x"]]
    return measure_accuracy([fp32.run(f) for f in feeds], [compiled.run(f) for f in feeds]).loss


def test_auto_picks_the_fastest_within_budget_and_reports_every_candidate(samples, timings,
                                                                          monkeypatch):
    timings(fp32=10.0, bf16=6.0, int8=3.0)
    from mcc.build import lower

    builds, build = [], lower.lower_and_build
    monkeypatch.setattr(lower, "lower_and_build",
                        lambda *a, **k: builds.append(1) or build(*a, **k))
    lines = []
    compiled = mcc.compile(conv_dense_model(), precision="auto", calibration=str(samples),
                           accuracy_budget=0.05, progress=lines.append)
    info = compiled.metadata["precision"]
    assert info["mode"] == "auto" and info["chosen"] == "int8"
    assert (info["accuracy_data"], info["accuracy_samples"]) == ("held-out", 2)
    assert set(info["candidates"]) == {"fp32", "bf16", "int8"}
    assert info["layers"] == {"conv2d_0": "int8", "conv2d_2": "int8", "matmul_0": "int8",
                              "conv2d_1": "int8"}  # the depthwise conv reads uint8 too
    fp32 = info["candidates"]["fp32"]
    assert fp32["loss"] == 0.0 and fp32["latency_ms"] == 10.0
    assert fp32["layers"] == {"fp32": ["conv2d_0", "conv2d_1", "conv2d_2", "matmul_0"]}
    int8 = info["candidates"]["int8"]
    assert 0 < int8["loss"] <= 0.05 and int8["within_budget"]
    if _host_has_bf16():
        assert info["candidates"]["bf16"]["layers"] == {
            "bf16": ["conv2d_0", "conv2d_2", "matmul_0"], "fp32": ["conv2d_1"]}
    else:
        assert "avx512bf16" in info["candidates"]["bf16"]["dropped"]
    # the int8 module's own report, as --precision int8 gives it
    assert compiled.metadata["quantization"]["int8_ops"] == ["conv2d_0", "conv2d_1",
                                                             "conv2d_2", "matmul_0"]
    assert compiled.report["precision"] == info
    assert any("precision auto 3/3: building int8" in ln for ln in lines), lines
    # builds: int8's calibration, fp32, bf16, and int8 once (its budget trial is the
    # candidate: nothing rebuilt)
    assert len(builds) == (4 if _host_has_bf16() else 3)
    assert any("<- chosen" in ln and "int8" in ln for ln in lines), lines
    # numeric: the chosen module against an fp32 compile, on every sample
    fp32_module = mcc.compile(conv_dense_model())
    assert 0 < _loss_vs_fp32(compiled, fp32_module, samples) <= 0.05


@needs_bf16
def test_auto_picks_bf16_when_it_is_the_fastest(samples, timings):
    timings(fp32=10.0, bf16=2.0, int8=3.0)
    compiled = mcc.compile(conv_dense_model(), precision="auto", calibration=str(samples),
                           accuracy_budget=0.05)
    info = compiled.metadata["precision"]
    assert info["chosen"] == "bf16" and info["bf16_kernels"] == 3
    assert "quantization" not in compiled.metadata
    assert compiled.report["verify"]["cosine_min"] == 0.999  # bf16's own check
    fp32_module = mcc.compile(conv_dense_model())
    assert 0 < _loss_vs_fp32(compiled, fp32_module, samples) <= 1e-3


@pytest.mark.parametrize("budget", [0.0, 1e-9])
def test_a_zero_or_unmeetable_budget_keeps_fp32(samples, timings, budget):
    timings(fp32=10.0, bf16=2.0, int8=1.0)  # fp32 the slowest, and still kept
    compiled = mcc.compile(conv_dense_model(), precision="auto", calibration=str(samples),
                           accuracy_budget=budget)
    info = compiled.metadata["precision"]
    assert info["chosen"] == "fp32" and info["layers"]["conv2d_0"] == "fp32"
    assert "quantization" not in compiled.metadata
    assert compiled.report["verify"]["ok"]  # fp32's tolerances apply
    int8 = info["candidates"]["int8"]
    if budget == 0.0:  # int8 built without fitting, reported over budget
        assert int8["loss"] > 0 and not int8["within_budget"]
    else:  # no share of int8 ops meets it: dropped with the reason
        assert "cannot be met" in int8["dropped"]


def test_auto_without_calibration_skips_int8_loudly(timings):
    timings(fp32=10.0, bf16=5.0)
    lines = []
    compiled = mcc.compile(conv_dense_model(), precision="auto", progress=lines.append)
    info = compiled.metadata["precision"]
    assert info["accuracy_data"] == "synthetic" and info["accuracy_budget"] == 0.01
    assert "no --calibration" in info["candidates"]["int8"]["dropped"]
    assert any("WARNING" in ln and "int8 is not tried" in ln for ln in lines), lines
    assert info["chosen"] == ("bf16" if _host_has_bf16() else "fp32")


def test_cli_auto_and_info(cli, save_onnx, samples, timings, tmp_path):
    timings(fp32=10.0, bf16=6.0, int8=3.0)
    path = save_onnx(conv_dense_model())
    out = tmp_path / "m.so"
    result = cli("compile", path, "-o", out, "--precision", "auto", "--calibration", samples,
                 "--accuracy-budget", "0.05")
    assert result.exit_code == 0, result.output
    assert "precision auto -> int8" in result.stderr
    info = cli("info", out)
    assert info.exit_code == 0
    assert "precision: auto -> int8 (budget 0.05" in info.output
    assert "quantize: int8, 4 ops int8, 0 fp32" in info.output
    meta = json.loads(cli("info", out, "--json").output)
    assert meta["precision"]["candidates"]["fp32"]["latency_ms"] == 10.0


def test_a_bad_int8_option_is_the_users_error_not_a_dropped_candidate(cli, save_onnx,
                                                                      samples, tmp_path):
    path = save_onnx(conv_dense_model())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--precision", "auto",
                 "--calibration", samples, "--exclude", "conv9")
    assert_one_line_error(result, "--exclude 'conv9' matches no op or node")
    assert not (tmp_path / "m.so").exists()


def test_auto_on_a_target_without_bf16_tries_fp32_and_int8_only(timings):
    compiled = mcc.compile(conv_dense_model(), target="x86-avx2", precision="auto")
    candidates = compiled.metadata["precision"]["candidates"]
    assert "x86-avx2 lacks avx512bf16" in candidates["bf16"]["dropped"]
    assert "no --calibration" in candidates["int8"]["dropped"]
    assert compiled.metadata["precision"]["chosen"] == "fp32"


def test_auto_refuses_an_already_quantized_model(tmp_path):
    from test_quantize import _ort_qdq

    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)} for _ in range(4)]
    path = tmp_path / "qdq.onnx"
    _ort_qdq(TINY_MODELS["conv_bn"](), path, feeds)
    with pytest.raises(mcc.MccError, match="already quantized.*without --precision"):
        mcc.compile(path, precision="auto")
