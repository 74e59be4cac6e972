"""NaN goes through Relu as in ONNX Runtime, and costs no kernel."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from conftest import make_model

X = np.array([np.nan, -1, 2, np.inf, -np.inf, 0.5], np.float32)
CONSTS = {"lo": np.float32(0), "hi": np.float32(1), "z": np.zeros(6, np.float32)}


@pytest.mark.parametrize("op, ins", [("Relu", ["x"])])
def test_nan_like_onnxruntime(op, ins):
    import mcc

    inputs = [("x", [6])] + ([("x2", [1])] if "x2" in ins else [])
    model = make_model([helper.make_node(op, ins, ["y"])], inputs, [("y", [6])],
                       inits=[(k, v) for k, v in CONSTS.items() if k in ins])
    feed = {"x": X}
    if "x2" in ins:
        feed["x2"] = np.array([np.nan], np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    got = mcc.compile(model).run(feed)["y"]
    np.testing.assert_array_equal(got, expected)  # NaN == NaN for assert_array_equal


def test_conv_relu_is_still_one_kernel():
    import mcc

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                        helper.make_node("Relu", ["c"], ["y"])],
                       [("x", [1, 4, 8, 8])], [("y", [1, 8, 8, 8])], inits=[("w", w)])
    compiled = mcc.compile(model, layout="NCHW", winograd=False)
    assert compiled.report["schedule"]["tasks"] == 1
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    y = compiled.run({"x": x})["y"]
    assert np.isnan(y[:, :, :2, :2]).all()  # every output the NaN pixel reaches
