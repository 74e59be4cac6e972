import numpy as np
import pytest

from mcc.errors import MccError
from mcc.runtime.tensors import TensorSpec, check_feed, parse_input_shapes, random_inputs

SPECS = [TensorSpec("image", ("batch", 3, 4, 4), "float32"),
         TensorSpec("mask", ("batch", 4), "int64")]


def test_parse_input_shapes():
    assert parse_input_shapes(["a=1,3,224,224", "b:c=7"]) == {"a": (1, 3, 224, 224), "b:c": (7,)}


@pytest.mark.parametrize("item, message", [
    ("a", "must look like NAME=D0,D1"),
    ("a=1,x", "must be integers"),
    ("a=1,0", "must be positive"),
])
def test_parse_input_shapes_errors(item, message):
    with pytest.raises(MccError, match=message):
        parse_input_shapes([item])


def test_check_feed_binds_symbolic_dims_consistently():
    feed = {"image": np.zeros((2, 3, 4, 4), np.float32), "mask": np.zeros((2, 4), np.int64)}
    arrays = check_feed(SPECS, feed)
    assert [a.shape for a in arrays] == [(2, 3, 4, 4), (2, 4)]
    feed["mask"] = np.zeros((3, 4), np.int64)
    with pytest.raises(MccError, match="input 'mask' has batch=3 on axis 0, but another input "
                                       "set batch=2"):
        check_feed(SPECS, feed)


@pytest.mark.parametrize("feed, message", [
    ({"image": np.zeros((1, 3, 4, 4), np.float32)}, "missing input 'mask'"),
    ({"img": 0, "mask": 0}, "unknown input 'img'; the model's inputs are: image, mask"),
    ({"image": np.zeros((1, 3, 4, 4)), "mask": np.zeros((1, 4), np.int64)},
     "input 'image' has dtype float64, expected float32"),
    ({"image": np.zeros((1, 3, 5, 4), np.float32), "mask": np.zeros((1, 4), np.int64)},
     r"input 'image' has shape \[1, 3, 5, 4\], expected \[batch,3,4,4\] \(axis 2 must be 4\)"),
    ({"image": np.zeros((3, 4, 4), np.float32), "mask": np.zeros((1, 4), np.int64)},
     "input 'image' has shape"),
])
def test_check_feed_errors(feed, message):
    with pytest.raises(MccError, match=message):
        check_feed(SPECS, feed)


def test_random_inputs_are_seeded_and_typed():
    a, b = random_inputs(SPECS, seed=3), random_inputs(SPECS, seed=3)
    assert a["image"].shape == (1, 3, 4, 4) and a["image"].dtype == np.float32
    assert a["mask"].dtype == np.int64 and 0 <= a["mask"].min() and a["mask"].max() < 10
    np.testing.assert_array_equal(a["image"], b["image"])
