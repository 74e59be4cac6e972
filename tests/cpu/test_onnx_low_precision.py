"""Cast to and from float8 and sub-byte integers, bit for bit against ONNX's reference
implementation, on values chosen to hit rounding ties, subnormals, overflow, inf and NaN."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from mcc.verify.onnx_backend import MccBackend

FLOAT8 = {TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
          TensorProto.FLOAT8E4M3FNUZ: ml_dtypes.float8_e4m3fnuz,
          TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
          TensorProto.FLOAT8E5M2FNUZ: ml_dtypes.float8_e5m2fnuz}


def cast_model(source: int, to: int, saturate: int | None = None):
    attrs = {"to": to} if saturate is None else {"to": to, "saturate": saturate}
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], **attrs)], "cast",
        [helper.make_tensor_value_info("x", source, [None])],
        [helper.make_tensor_value_info("y", to, [None])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def hard_floats(fmt) -> np.ndarray:
    """Every finite value of ``fmt``, the midpoints between neighbours (ties), values just
    beside them, beyond the largest value, tiny ones, signed zeros, inf and NaN."""
    finite = np.unique(np.arange(256, dtype=np.uint8).view(fmt).astype(np.float32))
    finite = finite[np.isfinite(finite)]
    mids = (finite[:-1] + finite[1:]) / 2
    top = float(ml_dtypes.finfo(fmt).max)
    extra = [top * 1.06, top * 1.2, 1e6, 1e-9, -0.0, np.inf, -np.inf, np.nan]
    values = np.concatenate([finite, mids, np.nextafter(mids, np.inf),
                             np.nextafter(mids, -np.inf), extra]).astype(np.float32)
    return np.concatenate([values, -values])


@pytest.mark.parametrize("to", list(FLOAT8))
@pytest.mark.parametrize("saturate", [1, 0])
def test_float_to_float8_is_bit_exact(to, saturate):
    model = cast_model(TensorProto.FLOAT, to, saturate)
    x = hard_floats(FLOAT8[to])
    ours = MccBackend.prepare(model).run([x])[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert ours.dtype == want.dtype
    same = (ours.view(np.uint8) == want.view(np.uint8)) | \
        (np.isnan(ours.astype(np.float32)) & np.isnan(want.astype(np.float32)))
    assert same.all(), (x[~same][:5], ours[~same][:5], want[~same][:5])


@pytest.mark.parametrize("source", list(FLOAT8))
def test_float8_to_float16_covers_every_code(source):
    model = cast_model(source, TensorProto.FLOAT16)
    x = np.arange(256, dtype=np.uint8).view(FLOAT8[source])
    ours = MccBackend.prepare(model).run([x])[0]
    np.testing.assert_array_equal(ours, x.astype(np.float16))


@pytest.mark.parametrize("to,dtype", [(TensorProto.INT4, ml_dtypes.int4),
                                      (TensorProto.UINT4, ml_dtypes.uint4),
                                      (TensorProto.INT2, ml_dtypes.int2),
                                      (TensorProto.UINT2, ml_dtypes.uint2)])
def test_sub_byte_integers_wrap_like_onnx(to, dtype):
    x = np.array([-300, -9, -8.7, -1, -0.5, 0, 0.9, 1, 3.7, 7, 8, 15, 16, 17, 1e6, np.nan, np.inf],
                 np.float32)
    model = cast_model(TensorProto.FLOAT, to)
    rep = MccBackend.prepare(model)
    ours = rep.run([x])[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert ours.dtype == want.dtype == dtype
    np.testing.assert_array_equal(ours.astype(np.int32), want.astype(np.int32))
    back = MccBackend.prepare(cast_model(to, TensorProto.FLOAT)).run([want])[0]
    np.testing.assert_array_equal(back, want.astype(np.float32))


def test_float4_e2m1_round_trip_is_bit_exact():
    fmt = ml_dtypes.float4_e2m1fn
    x = hard_floats(fmt)
    model = cast_model(TensorProto.FLOAT, TensorProto.FLOAT4E2M1)
    ours = MccBackend.prepare(model).run([x])[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert ours.dtype == want.dtype == fmt
    np.testing.assert_array_equal(ours.view(np.uint8), want.view(np.uint8))
    codes = np.arange(16, dtype=np.uint8).view(fmt)
    back = MccBackend.prepare(cast_model(TensorProto.FLOAT4E2M1, TensorProto.FLOAT)).run([codes])
    np.testing.assert_array_equal(back[0], codes.astype(np.float32))


@pytest.mark.parametrize("mode", ["up", "down", "nearest"])
def test_float_to_e8m0_matches_the_reference_rounding(mode):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT8E8M0, round_mode=mode)],
        "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT8E8M0, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    x = np.array([0, 1e-40, 0.124, 0.25, 0.375, 0.376, 1.1, 1.5, 3, 3.0e38, 3.4e38, np.inf,
                  np.nan, -2.5], np.float32)
    ours = MccBackend.prepare(model).run([x])[0]
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ours.view(np.uint8), want.view(np.uint8))
