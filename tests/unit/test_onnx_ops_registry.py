"""mcc's converter registry: what it adds to TVM's ONNX importer, and the op pre-check."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from mcc.errors import MccError
from mcc.frontends import onnx_ops
from mcc.frontends.onnx_import import import_onnx


def _model(nodes, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def test_mcc_converters_are_on_top_of_tvms():
    from tvm.relax.frontend.onnx import onnx_frontend

    ours = onnx_ops.registered_ops()
    assert {"LSTM", "GRU", "RNN", "Scan", "Attention", "LayerNormalization",
            "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"} <= set(ours)
    merged = onnx_ops.convert_map()
    assert merged["LSTM"] is ours["LSTM"] and "Conv" in merged
    before = onnx_frontend._get_convert_map
    with onnx_ops.extended_convert_map():
        assert onnx_frontend._get_convert_map()["Attention"] is ours["Attention"]
    assert onnx_frontend._get_convert_map is before  # restored afterwards
    assert "LSTM" not in before()


def test_register_adds_an_op_for_other_modules(monkeypatch):
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    monkeypatch.setattr(onnx_ops, "_REGISTRY", dict(onnx_ops._REGISTRY))

    @onnx_ops.register("Det")  # an ONNX op TVM lacks; any module can register like this
    class Double(OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            return relax.op.add(inputs[0], inputs[0])

    model = _model([helper.make_node("Det", ["x"], ["y"])])
    imported = import_onnx(model, {})
    text = imported.mod.script()
    assert "R.add(x, x)" in text


def test_unsupported_op_inside_a_branch_is_named():
    branch = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["t"], name="inner", domain="com.example")],
        "then",
        [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    cond = helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
        "c", TensorProto.BOOL, [], [True]))
    model = _model([cond, helper.make_node("If", ["c"], ["y"], name="branchy",
                                           then_branch=branch, else_branch=branch)])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(MccError, match=r"unsupported ONNX op 'NoSuchOp'.*node 'inner' "
                                       r"\(in (then|else)_branch of If 'branchy'\)"):
        import_onnx(model, {})


def test_constant_inputs_become_weights():
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]), axes],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    with pytest.raises(MccError, match="axes"):
        import_onnx(model, {})  # TVM needs the axes at compile time
    import numpy as np

    imported = import_onnx(model, {}, constant_inputs={"axes": np.array([1], np.int64)})
    assert [t.name for t in imported.inputs] == ["x"]
    assert imported.outputs[0].shape == (2, 1)
    with pytest.raises(MccError, match="names 'nope', but .* has inputs: x, axes"):
        import_onnx(model, {}, constant_inputs={"nope": np.array([1])})
