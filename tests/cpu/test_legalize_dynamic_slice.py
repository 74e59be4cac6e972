"""mcc.LegalizeDynamicSlice: ONNX Slice with run-time starts/ends compiles (TVM's
FoldConstant leaks an undefined shape function otherwise) and slices like numpy."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

from mcc.frontends.onnx_import import import_onnx
from mcc.passes import LegalizeDynamicSlice
from mcc.verify.onnx_backend import MccBackend


def slice_model():
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])], "slice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 5]),
         helper.make_tensor_value_info("starts", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("ends", TensorProto.INT64, [2]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _op_names(mod):
    names = []
    relax.analysis.post_order_visit(
        mod["main"], lambda e: names.append(e.op.name) if isinstance(e, relax.Call)
        and isinstance(e.op, tvm.ir.Op) else None)
    return names


def test_fold_constant_no_longer_leaves_an_undefined_shape_function():
    mod = import_onnx(slice_model(), {}).mod
    assert "relax.dynamic_strided_slice" in _op_names(mod)
    with pytest.raises(Exception, match="shape_func"):
        relax.transform.FuseOps()(relax.transform.LegalizeOps()(
            relax.transform.FoldConstant()(mod)))
    lowered = LegalizeDynamicSlice()(mod)
    assert "relax.dynamic_strided_slice" not in _op_names(lowered)
    folded = relax.transform.FoldConstant()(lowered)
    relax.transform.FuseOps()(relax.transform.LegalizeOps()(folded))  # no undefined kernel


def test_runtime_slices_match_numpy():
    rep = MccBackend.prepare(slice_model())
    assert not rep.specialized
    x = np.arange(30, dtype=np.float32).reshape(6, 5)
    for starts, ends, axes in [([1, 0], [4, 5], [0, 1]), ([-2, 1], [100, 3], [0, 1]),
                               ([0, 2], [6, -1], [1, 0])]:
        want = x
        for s, e, a in zip(starts, ends, axes):
            want = want[(slice(None),) * a + (slice(s, e),)]
        got = rep.run([x, *(np.array(v, np.int64) for v in (starts, ends, axes))])[0]
        np.testing.assert_array_equal(got, want)
