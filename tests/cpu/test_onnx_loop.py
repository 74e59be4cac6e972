"""ONNX Loop (a recursive Relax function): a TorchScript export with a run-time step count,
a scan output over a data-dependent trip count, and an early exit, against ONNX Runtime."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import mcc
from mcc.frontends.onnx_import import ort_reference


def scripted_refinement() -> onnx.ModelProto:
    """torch.jit.script of a recurrent refinement; ``steps`` is an input, so torch's ONNX
    exporter writes a Loop whose body reads the outer ``x`` and the Linear's weights."""
    torch = pytest.importorskip("torch")

    class IterativeRefine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = torch.nn.Linear(24, 16)

        def forward(self, x, h, steps):
            for _ in range(int(steps)):
                h = torch.tanh(self.cell(torch.cat([x, h], 1)))
            return h

    torch.manual_seed(0)
    module = torch.jit.script(IterativeRefine().eval())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, 8), torch.zeros(2, 16), torch.tensor(3)),
                          buf, dynamo=False, opset_version=17,
                          input_names=["x", "h", "steps"], output_names=["y"])
    model = onnx.load_from_string(buf.getvalue())
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    return model


def test_torchscript_loop_with_runtime_steps_matches_onnxruntime(tmp_path):
    model = scripted_refinement()
    module = mcc.load(mcc.compile(model).export(tmp_path / "refine.so"))
    reference = ort_reference(model.SerializeToString(), ["y"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    h = rng.standard_normal((2, 16)).astype(np.float32)
    results = []
    for steps in (0, 1, 3, 7):  # one .so, the trip count is data
        feed = {"x": x, "h": h, "steps": np.array(steps, np.int64)}
        ours = module.run(feed)["y"]
        np.testing.assert_allclose(ours, reference(feed)["y"], rtol=1e-5, atol=1e-5)
        results.append(ours)
    np.testing.assert_array_equal(results[0], h)  # zero iterations: the initial state
    assert not np.allclose(results[2], results[3])


def counting_loop() -> onnx.ModelProto:
    """acc += x * i while i < n and sum(acc) < limit; scan out acc each iteration."""
    n = helper.make_node
    body = helper.make_graph(
        [n("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         n("Mul", ["x", "fi"], ["step"]),
         n("Add", ["acc_in", "step"], ["acc_out"]),
         n("ReduceSum", ["acc_out"], ["total"], keepdims=0),
         n("Less", ["total", "limit"], ["cond_out"]),
         n("Identity", ["acc_out"], ["scan"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scan", TensorProto.FLOAT, [3])])
    graph = helper.make_graph(
        [n("Constant", [], ["go"], value=helper.make_tensor("go", TensorProto.BOOL, [], [1])),
         n("Loop", ["trip", "go", "acc0"], ["acc", "history"], body=body)],
        "counting",
        [helper.make_tensor_value_info("trip", TensorProto.INT64, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("limit", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("acc0", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("acc", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("history", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_loop_scan_output_and_early_exit_match_onnxruntime():
    from mcc.verify.onnx_backend import MccBackend

    model = counting_loop()
    rep = MccBackend.prepare(model)
    assert not rep.specialized  # trip count, condition and limit stay run-time inputs
    reference = ort_reference(model.SerializeToString(), ["acc", "history"])
    x = np.array([1.0, 2.0, -0.5], np.float32)
    acc0 = np.zeros(3, np.float32)
    lengths = []
    for trip, limit in [(5, 1e9), (0, 1e9), (10, 20.0), (4, -1.0)]:
        feed = {"trip": np.array(trip, np.int64), "x": x,
                "limit": np.array(limit, np.float32), "acc0": acc0}
        acc, history = rep.run([feed[name] for name in rep.input_names])
        want = reference(feed)
        np.testing.assert_allclose(acc, want["acc"], rtol=1e-6)
        np.testing.assert_allclose(history, want["history"], rtol=1e-6)
        lengths.append(history.shape[0])
    assert lengths == [5, 0, 5, 1]  # full, none, stopped by the condition, after one step
