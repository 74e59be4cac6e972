"""Calibration collectors: the ranges each method computes, and their validation."""

import numpy as np
import pytest

from mcc.errors import MccError
from mcc.passes.calibrate import TensorStats, calibrate
from mcc.passes.quantize import activation_params, weight_params


def _stats(values):
    stats = TensorStats("t")
    rng = np.random.default_rng(0)
    for chunk in np.array_split(values, 4):
        stats.observe(chunk, rng)
    return stats


def test_methods_clip_outliers_differently():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(0, 1, 40_000), [50.0]]).astype(np.float32)
    stats = _stats(values)
    assert stats.range("minmax") == (0.0, 50.0)
    low, high = stats.range("percentile")
    assert low == 0.0 and 0.99 < high < 1.01
    low, high = stats.range("entropy")
    assert low == 0.0 and 0.9 < high < 10.0  # clipped well below the outlier


def test_ranges_always_contain_zero_and_are_not_empty():
    assert _stats(np.full(100, 3.0, np.float32)).range("minmax") == (0.0, 3.0)
    assert _stats(np.full(100, -2.0, np.float32)).range("minmax") == (-2.0, 0.0)
    low, high = _stats(np.zeros(100, np.float32)).range("minmax")
    assert low == 0.0 and high > 0.0


def test_signed_entropy_range_is_symmetric_clip():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.standard_normal(40_000), [-40.0, 40.0]]).astype(np.float32)
    low, high = _stats(values).range("entropy")
    assert -10 < low < -1 and 1 < high < 10


def test_nan_and_unknown_method_are_user_errors():
    with pytest.raises(MccError, match="tensor 't' holds NaN or Inf"):
        _stats(np.array([1.0, np.nan], np.float32))
    with pytest.raises(MccError, match="choose one of minmax, percentile, entropy"):
        calibrate(None, [], [], [{}], "kl", None, [])


def test_quantization_parameters():
    scale, zero_point = activation_params(-1.0, 3.0)
    assert scale == pytest.approx(4 / 255) and zero_point == 64
    weight = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)
    wq, sw = weight_params(weight, per_tensor=False)
    np.testing.assert_array_equal(wq, [[64, -127], [127, 16]])
    np.testing.assert_allclose(sw, [1 / 127, 2 / 127])
    wq, sw = weight_params(weight, per_tensor=True)
    np.testing.assert_allclose(sw, [2 / 127, 2 / 127])
    on_grid = np.array([[0.3, -0.6, 0.9]]) * 1.0  # steps of 0.3: q = 1, -2, 3
    wq, sw = weight_params(on_grid, per_tensor=False, on_grid=True)
    np.testing.assert_allclose(wq * sw[:, None], on_grid, rtol=1e-6)
    assert abs(wq).max() == 126  # 0.9 / (0.9 / 126): the largest k on the grid


def test_holdout_split_is_disjoint_seeded_and_automatic():
    from mcc.driver.quantization import split_holdout

    samples = [{"x": np.full(1, i)} for i in range(20)]
    calib, held = split_holdout(samples, None)  # automatic: 20% of 10 or more samples
    ids = lambda part: sorted(int(s["x"][0]) for s in part)  # noqa: E731
    assert len(held) == 4 and len(calib) == 16
    assert sorted(ids(calib) + ids(held)) == list(range(20))
    assert ids(held) == ids(split_holdout(samples, None)[1])  # seeded: the same every time
    assert ids(held) != [16, 17, 18, 19]  # spread over the data, not its tail
    assert split_holdout(samples[:9], None) == (samples[:9], [])  # too few: none held out
    assert len(split_holdout(samples, 0.5)[1]) == 10 and split_holdout(samples, 0.0)[1] == []
    assert len(split_holdout(samples[:3], 0.1)[1]) == 1  # a fraction asked for holds one at least
    with pytest.raises(MccError, match="--holdout 1 must be a fraction in"):
        split_holdout(samples, 1.0)
    with pytest.raises(MccError, match="leaves no sample for calibration"):
        split_holdout(samples[:1], 0.5)
