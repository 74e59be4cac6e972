"""Verification on real models: synthetic feeds shaped by the model (mcc.frontends.feeds),
--verify-inputs, and what happens when the reference runtime refuses a feed or a model."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import assert_one_line_error, graph_model, tiny_bert


def test_bert_like_model_compiles_and_verifies_with_default_options(cli, save_onnx, tmp_path):
    """token_type_ids index a 2-row table: drawn from [0, 10) ONNX Runtime refused them."""
    result = cli("compile", save_onnx(tiny_bert()), "-o", tmp_path / "bert.so")
    assert result.exit_code == 0, result.output
    assert "vs onnxruntime" in result.stderr and " ok" in result.stderr


def abs_gather_model():
    """A Gather whose indices pass through Abs, which the feed analysis does not follow:
    synthetic values in [0, 10) index a 2-row table."""
    return graph_model(
        [helper.make_node("Abs", ["idx"], ["a"]),
         helper.make_node("Gather", ["table", "a"], ["y"], name="lookup")],
        [("idx", TensorProto.INT64, [1, 4])], [("y", TensorProto.FLOAT, [1, 4, 3])],
        [("table", np.arange(6, dtype=np.float32).reshape(2, 3))])


@pytest.fixture
def abs_gather(save_onnx):
    return save_onnx(abs_gather_model(), "abs_gather.onnx")


def test_reference_rejecting_synthetic_inputs_is_a_user_error(cli, abs_gather, tmp_path):
    out = tmp_path / "m.so"
    result = cli("compile", abs_gather, "-o", out)
    assert result.exit_code == 1
    assert_one_line_error(result, "rejected the synthetic verification inputs", "'idx'",
                          "indices element out of data bounds", "--verify-inputs FILE.npz",
                          "--no-verify")
    assert not out.exists()


def test_verify_inputs_file_is_the_feed(cli, abs_gather, tmp_path):
    np.savez(tmp_path / "in.npz", idx=np.array([[1, 0, -1, 1]], np.int64))
    result = cli("compile", abs_gather, "--verify-inputs", tmp_path / "in.npz",
                 "-o", tmp_path / "m.so")
    assert result.exit_code == 0, result.output
    assert f"ok on '{tmp_path / 'in.npz'}'" in result.stderr


def test_first_calibration_sample_is_the_feed(cli, abs_gather, tmp_path):
    np.savez(tmp_path / "samples.npz", idx=np.array([[[0, 1, 1, 0]], [[5, 5, 5, 5]]], np.int64))
    result = cli("compile", abs_gather, "--calibration", tmp_path / "samples.npz",
                 "-o", tmp_path / "m.so")
    assert result.exit_code == 0, result.output  # the second (invalid) sample is not used
    assert "on the first sample of" in result.stderr


def test_verify_inputs_the_reference_rejects(cli, abs_gather, tmp_path):
    np.savez(tmp_path / "in.npz", idx=np.array([[0, 1, 7, 1]], np.int64))
    assert_one_line_error(cli("compile", abs_gather, "--verify-inputs", tmp_path / "in.npz",
                              "-o", tmp_path / "m.so"),
                          "rejected the verification inputs from", "'idx'")


@pytest.mark.parametrize("arrays, fragments", [
    ({"idx": np.zeros((1, 4), np.float32)}, ["input 'idx' has dtype float32, expected int64"]),
    ({"ids": np.zeros((1, 4), np.int64)}, ["'ids' that is not a model input", "idx"]),
    ({"idx": np.zeros((1, 5), np.int64)}, ["input 'idx' has shape [1, 5], expected [1,4]"]),
])
def test_bad_verify_inputs_file_is_one_line(cli, abs_gather, tmp_path, arrays, fragments):
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "m.so"
    assert_one_line_error(cli("compile", abs_gather, "--verify-inputs", tmp_path / "bad.npz",
                              "-o", out), *fragments)
    assert not out.exists()


def test_verify_inputs_with_no_verify_contradict(cli, abs_gather, tmp_path):
    np.savez(tmp_path / "in.npz", idx=np.zeros((1, 4), np.int64))
    assert_one_line_error(cli("compile", abs_gather, "--no-verify", "--verify-inputs",
                              tmp_path / "in.npz"), "--verify-inputs and --no-verify")


def test_model_the_reference_cannot_load_skips_verification(cli, save_onnx, tmp_path,
                                                            monkeypatch):
    import onnxruntime

    def not_implemented(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an "
                           "implementation for Gather(13) node with name 'lookup'")

    monkeypatch.setattr(onnxruntime, "InferenceSession", not_implemented)
    out = tmp_path / "m.so"
    result = cli("compile", save_onnx(tiny_bert()), "-o", out)
    assert result.exit_code == 0, result.output
    assert ("[mcc] verify   skipped: onnxruntime cannot load the model: [ONNXRuntimeError] : "
            "9 : NOT_IMPLEMENTED" in result.stderr)
    assert out.exists()
