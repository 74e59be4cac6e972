"""A fixed, representative subset of the ONNX backend node tests, run against mcc.

The full suite (~1,900 tests, ~20 minutes) is ``benchmarks/onnx_conformance.py``,
which writes docs/ONNX_SUPPORT.md. These cover TVM's ops, each of mcc's own
converters, shape-operand inputs bound at compile time, and a known failure.
"""

from __future__ import annotations

import unittest

import pytest

from mcc.verify.conformance import node_cases, run_case

REPRESENTATIVE = [
    # TVM's converters through mcc's pipeline
    "test_add_bcast", "test_conv_with_strides_padding", "test_maxpool_2d_pads",
    "test_gemm_all_attributes", "test_softmax_axis_1", "test_gather_elements_0",
    "test_clip", "test_shape", "test_if",
    # mcc's converters
    "test_lstm_with_peepholes", "test_gru_with_initial_bias", "test_simple_rnn_bidirectional",
    "test_attention_4d_gqa_attn_mask", "test_attention_3d_causal",
    "test_layer_normalization_4d_axis1", "test_sce_mean_weight_ii",
    "test_nllloss_NCd1d2_with_weight_reduction_mean", "test_swish", "test_cumprod_2d_axis_1",
    "test_hannwindow_symmetric", "test_pow_types_float32_int64", "test_scan9_multi_state",
    "test_reversesequence_batch", "test_onehot_with_negative_axis",
    "test_loop11", "test_range_float_type_positive_delta_expanded",
    "test_cast_FLOAT_to_FLOAT8E4M3FN", "test_castlike_FLOAT8E5M2_to_FLOAT16_expanded",
    "test_castlike_FLOAT_to_INT4_expanded", "test_scatter_elements_with_axis",
    # shape operands fed as inputs, bound at compile time
    "test_reduce_sum_keepdims_random", "test_top_k",
]


# Round two: pass with every graph input left a run-time input (the strict count).
STRICT = [
    "test_slice", "test_cumsum_2d_negative_axis", "test_cumprod_1d_reverse_exclusive",
    "test_bitcast_float32_to_int32", "test_cast_FLOAT_to_FLOAT4E2M1",
    "test_cast_e8m0_FLOAT_to_FLOAT8E8M0", "test_attention_causal_boolmask_nan_robustness_expanded",
]


@pytest.fixture(scope="module")
def cases():
    return node_cases()


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_node_test_passes(cases, name):
    result = run_case(cases[name])
    assert result.status == "pass", result.reason


@pytest.mark.parametrize("name", STRICT)
def test_node_test_passes_without_bound_inputs(cases, name):
    result = run_case(cases[name])
    assert result.status == "pass", result.reason
    assert not result.specialized


def test_reduce_with_axes_input_is_marked_specialized(cases):
    assert run_case(cases["test_reduce_mean_do_not_keepdims_example"]).specialized
    assert not run_case(cases["test_relu"]).specialized


def test_failures_carry_a_one_line_reason(cases):
    unsupported = run_case(cases["test_dft"])
    assert unsupported.status == "fail"
    assert "unsupported ONNX op 'DFT'" in unsupported.reason and "\n" not in unsupported.reason
    skipped = run_case(cases["test_string_concat_broadcasting"])
    assert skipped.status == "skip" and "string" in skipped.reason


def test_adapter_plugs_into_onnx_backend_test_runner():
    """onnx's own runner drives MccBackend (prepare -> run -> its output check)."""
    import onnx.backend.test

    from mcc.verify import onnx_backend

    suite = onnx.backend.test.BackendTest(onnx_backend, __name__)
    suite.include(r"^test_(relu|lstm_defaults)_cpu$")
    result = unittest.TextTestRunner(verbosity=0).run(suite.test_suite)
    ran = result.testsRun - len(result.skipped)  # tests not included count as skipped
    assert ran == 2 and result.wasSuccessful(), result.failures + result.errors
