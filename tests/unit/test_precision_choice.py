"""--precision: the options (int8 is --quantize int8, contradictory pairs refused, auto's
default budget) and auto's choice among measured candidates, with no build."""

import pytest

import mcc
from conftest import assert_one_line_error
from mcc.driver.config import AUTO_BUDGET
from mcc.driver.precision_choice import Candidate, PrecisionChoice, describe, pick_fastest
from mcc.driver.quantization import AccuracyReport, OutputAccuracy
from mcc.errors import MccError


@pytest.mark.parametrize("given, precision, quantize", [
    ({}, "fp32", None),
    ({"quantize": "int8"}, "int8", "int8"),
    ({"precision": "int8"}, "int8", "int8"),
    ({"precision": "int8", "quantize": "int8"}, "int8", "int8"),
    ({"precision": "auto"}, "auto", None),
    ({"quantize": "fp16"}, "fp16", "fp16"),
    ({"precision": "fp16"}, "fp16", "fp16"),
    ({"precision": "fp16", "quantize": "fp16"}, "fp16", "fp16"),
])
def test_int8_is_one_request_however_it_is_given(given, precision, quantize):
    config = mcc.compile_config(**given)
    assert (config.precision, config.quantize) == (precision, quantize)


def test_auto_budget_default_and_int8_options():
    assert mcc.compile_config(precision="auto").accuracy_budget == AUTO_BUDGET
    assert mcc.compile_config(precision="auto", accuracy_budget=0.2).accuracy_budget == 0.2
    assert mcc.compile_config(precision="int8").accuracy_budget is None
    config = mcc.compile_config(precision="auto", exclude=("conv2d_0",), holdout=0.3)
    assert config.exclude == ("conv2d_0",) and config.holdout == 0.3
    with pytest.raises(MccError, match="apply to --precision int8 or auto"):
        mcc.compile_config(precision="bf16", accuracy_budget=0.1)


@pytest.mark.parametrize("precision, quantize", [
    ("auto", "int8"), ("bf16", "int8"), ("fp32", "int8"), ("int8", "fp16"), ("auto", "fp16")])
def test_contradictory_pairs_are_refused(precision, quantize):
    with pytest.raises(MccError, match=f"--precision {precision} and --quantize {quantize} "
                                       "exclude each other"):
        mcc.compile_config(precision=precision, quantize=quantize)


def test_contradictory_pair_is_one_cli_line(cli, tmp_path):
    result = cli("compile", tmp_path / "never.onnx", "-o", tmp_path / "m.so",
                 "--precision", "auto", "--quantize", "int8")
    assert_one_line_error(result, "--precision auto and --quantize int8 exclude each other")
    result = cli("compile", tmp_path / "never.onnx", "-o", tmp_path / "m.so",
                 "--precision", "fp8")
    assert result.exit_code == 2 and "fp8" in result.stderr  # click's choice check
    assert not list(tmp_path.iterdir())


def test_auto_refuses_a_target_that_cannot_run_here():
    with pytest.raises(MccError, match="--precision auto measures each candidate on this "
                                       "machine, and a rpi4 module cannot run here"):
        mcc.compile_config(target="rpi4", precision="auto")


def _report(cosine: float, max_abs: float, top1=None) -> AccuracyReport:
    return AccuracyReport(4, [OutputAccuracy("y", cosine, max_abs, top1)], "held-out")


def _candidates(fp32=10.0, bf16=6.0, int8=4.0, bf16_acc=None, int8_acc=None):
    return [Candidate("fp32", latency_ms=fp32),
            Candidate("bf16", latency_ms=bf16, accuracy=bf16_acc or _report(0.99999, 1e-3)),
            Candidate("int8", latency_ms=int8, accuracy=int8_acc or _report(0.999, 1e-2))]


def test_fastest_within_budget_wins():
    assert pick_fastest(_candidates(), 0.01).name == "int8"
    assert pick_fastest(_candidates(), 1e-4).name == "bf16"  # int8's loss 1e-3 is over
    assert pick_fastest(_candidates(bf16=3.0), 0.01).name == "bf16"
    assert pick_fastest(_candidates(fp32=2.0), 0.01).name == "fp32"
    # a top-1 flip counts: loss = 1 - agreement
    flipped = _candidates(int8_acc=_report(0.9999, 1e-2, top1=0.75))
    assert pick_fastest(flipped, 0.01).name == "bf16"
    assert pick_fastest(flipped, 0.3).name == "int8"


def test_budget_zero_keeps_fp32_unless_outputs_are_exact():
    rounded = _candidates(bf16_acc=_report(1.0, 1e-6))  # cosine rounds to 1: loss 0
    assert rounded[1].loss == 0.0
    assert pick_fastest(rounded, 0.0).name == "fp32"
    exact = _candidates(bf16_acc=_report(1.0, 0.0))  # e.g. no site could take bf16
    assert pick_fastest(exact, 0.0).name == "bf16"


def test_dropped_candidates_and_ties():
    cands = _candidates()
    cands[2].dropped = "no --calibration data"
    assert pick_fastest(cands, 0.01).name == "bf16"
    assert pick_fastest(_candidates(fp32=5.0, bf16=5.0, int8=5.0), 0.5).name == "fp32"
    assert cands[2].to_json(0.01) == {"dropped": "no --calibration data"}


def test_report_lists_candidates_and_layer_precisions():
    class Lowered:
        precision = None

    cands = _candidates()
    cands[0].layers = {"conv2d_0": "fp32", "matmul_0": "fp32"}
    cands[1].layers = {"conv2d_0": "bf16", "matmul_0": "bf16"}
    cands[2].layers = {"conv2d_0": "fp32", "matmul_0": "int8"}
    cands[2].lowered = Lowered()
    choice = PrecisionChoice(pick_fastest(cands, 0.01), cands, 0.01, "held-out", 4)
    info = choice.to_json()
    assert info["chosen"] == "int8" and info["layers"] == cands[2].layers
    assert info["candidates"]["int8"]["layers"] == {"fp32": ["conv2d_0"],
                                                    "int8": ["matmul_0"]}
    assert info["candidates"]["bf16"]["within_budget"] is True
    assert info["candidates"]["bf16"]["loss"] == pytest.approx(1e-5)
    lines = describe(info)
    assert "auto -> int8 (budget 0.01; accuracy vs fp32 on 4 held-out" in lines[0]
    chosen = [ln for ln in lines if "<- chosen" in ln]
    assert len(chosen) == 1 and "int8" in chosen[0], lines
    assert "conv/matmul: 1 int8, 1 fp32" in chosen[0]
    # as `mcc info` reads it back (keys sorted): candidates still listed fp32, bf16, int8
    resorted = dict(sorted(info["candidates"].items(), reverse=True))
    assert describe(dict(info, candidates=resorted)) == lines
    assert [ln.split()[1] for ln in lines[1:]] == ["fp32", "bf16", "int8"]


def test_candidates_are_timed_in_alternating_blocks():
    from mcc.verify.benchmark import time_interleaved

    calls, now = [], [0.0]
    cost = {"fp32": 4.0, "int8": 1.0}  # seconds per call, on a fake clock

    def call(name):
        def run():
            calls.append(name)
            now[0] += cost[name]
        return run

    times = time_interleaved({n: call(n) for n in cost}, rounds=2, repeat=2, warmup=1,
                             clock=lambda: now[0])
    assert calls == ["fp32"] * 3 + ["int8"] * 3 + ["fp32"] * 2 + ["int8"] * 2
    assert times["fp32"].median_ms == 4000.0 and times["int8"].median_ms == 1000.0
    assert times["fp32"].runs == 4
