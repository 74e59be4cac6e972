"""Integer Div / Mod never kill the process (x86 traps on x / 0 and INT_MIN / -1)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import mcc
from mcc.frontends.onnx_ops.integer_division import numpy_safe

DTYPES = {np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}


def div_mod_model(dtype) -> onnx.ModelProto:
    """q = a / b, m = a mod b (fmod=0, sign of b), f = a mod b (fmod=1, sign of a)."""
    elem = DTYPES[dtype]
    graph = helper.make_graph(
        [helper.make_node("Div", ["a", "b"], ["q"]),
         helper.make_node("Mod", ["a", "b"], ["m"]),
         helper.make_node("Mod", ["a", "b"], ["f"], fmod=1)], "divmod",
        [helper.make_tensor_value_info(n, elem, [8]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, elem, [8]) for n in ("q", "m", "f")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_zero_divisor_does_not_trap(tmp_path, dtype):
    path = tmp_path / "divmod.onnx"
    onnx.save(div_mod_model(dtype), str(path))
    module = tmp_path / "divmod.so"
    mcc.compile(str(path), verify=False).export(module)

    low = np.iinfo(dtype).min
    a = np.array([5, -5, 7, 3, low, 1, low, -9], dtype)
    b = np.array([3, 3, -2, 0, -1, 0, 0, -1], dtype)
    np.savez(tmp_path / "in.npz", a=a, b=b)
    # in a child process: a SIGFPE would kill it (exit -8), not this test run
    run = subprocess.run([sys.executable, "-m", "mcc.cli", "run", str(module), "--inputs",
                          str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = np.load(tmp_path / "out.npz")
    # mcc's definition: x / 0 = 0, x mod 0 = 0, x / -1 = -x (INT_MIN / -1 wraps to INT_MIN)
    np.testing.assert_array_equal(out["q"], np.array([1, -1, -3, 0, low, 0, 0, 9], dtype))
    np.testing.assert_array_equal(out["m"], np.array([2, 1, -1, 0, 0, 0, 0, 0], dtype))
    np.testing.assert_array_equal(out["f"], np.array([2, -2, 1, 0, 0, 0, 0, 0], dtype))
    for name, kind in (("q", "div"), ("m", "mod"), ("f", "fmod")):
        np.testing.assert_array_equal(numpy_safe(a, b, kind), out[name])


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_nonzero_divisors_match_onnxruntime(dtype):
    model = div_mod_model(dtype)
    compiled = mcc.compile(model, verify=False)
    rng = np.random.default_rng(0)
    a = rng.integers(-1000, 1000, 8).astype(dtype)
    b = rng.integers(1, 30, 8).astype(dtype) * np.where(rng.random(8) < 0.5, -1, 1).astype(dtype)
    ours = compiled.run({"a": a, "b": b})
    session = ort.InferenceSession(model.SerializeToString())
    for name, ref in zip(("q", "m", "f"), session.run(None, {"a": a, "b": b})):
        np.testing.assert_array_equal(ours[name], ref, err_msg=name)
