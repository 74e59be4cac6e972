"""Row tiles that do not divide the rows: 13x13 feature maps, 197 tokens, 9-pixel rows.

TiledReduction gives such kernels ~8 rows per micro-kernel and a last tile that is partly
outside the rows; TVM drops that tile's bounds when it moves the write-back and the
zero-init (mcc.schedule.rules.bounds puts them back). Numerics against ONNX Runtime, on
sizes where a wrong bound writes into a neighbour's memory or reads past the input.
"""

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import helper

import mcc
from conftest import make_model
from mcc.schedule.rules import TiledReduction
from mcc.schedule.rules.tiled_reduction import _rows_per_tile

X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2}


def _conv(hw, cin, cout, k, group=1, pool=False):
    rng = np.random.default_rng(5)
    pad = k // 2
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, group=group),
             helper.make_node("Relu", ["c"], ["r"])]
    out = [1, cout, hw, hw]
    if pool:
        nodes.append(helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[3, 3],
                                      strides=[1, 1], pads=[1] * 4))
    else:
        nodes[-1] = helper.make_node("Relu", ["c"], ["y"])
    return make_model(nodes, [("x", [1, cin, hw, hw])], [("y", out)],
                      [("w", rng.standard_normal((cout, cin // group, k, k)) * 0.2),
                       ("b", rng.standard_normal(cout))], "conv")


def _matmul(rows, k, n):
    rng = np.random.default_rng(6)
    return make_model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                       helper.make_node("Add", ["m", "b"], ["y"])],
                      [("x", [1, rows, k])], [("y", [1, rows, n])],
                      [("w", rng.standard_normal((k, n)) * 0.2), ("b", rng.standard_normal(n))],
                      "matmul")


MODELS = {
    "conv1x1_13x13": lambda: _conv(13, 64, 96, 1),
    "conv3x3_13x13": lambda: _conv(13, 16, 32, 3),
    "depthwise_13x13_pool": lambda: _conv(13, 32, 32, 3, group=32, pool=True),
    "conv3x3_9x9": lambda: _conv(9, 8, 16, 3),
    "matmul_197_tokens": lambda: _matmul(197, 64, 48),
    "matmul_11_rows": lambda: _matmul(11, 32, 64),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_partial_row_tiles_match_onnxruntime(name):
    model = MODELS[name]()
    compiled = mcc.compile(model, target=X86)  # verifies against ONNX Runtime itself
    rng = np.random.default_rng(2)
    feed = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
            .astype(np.float32) for i in model.graph.input}
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    (actual,) = compiled.run(feed).values()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    assert compiled.report["schedule"]["naive"] == 0


@pytest.mark.parametrize("rows,budget,expected", [
    (16, 8, 8), (12, 8, 6), (1500, 8, 6), (3, 8, 3), (1, 8, 1),  # divisors: no bounds
    (13, 8, 7), (9, 8, 5), (197, 8, 8)])  # 2 tiles of 7, 2 of 5, 25 of 8 (3 rows wasted)
def test_rows_per_tile(rows, budget, expected):
    assert _rows_per_tile(rows, budget) == expected


def test_the_last_tile_is_bounded_where_it_writes():
    from mcc.build.pipeline import optimize
    from mcc.frontends import import_model

    target = tvm.target.Target(X86)
    mod, _ = optimize(import_model(_matmul(13, 32, 64), {}, None).mod, target)
    (func,) = [f for gv, f in mod.functions_items()
               if isinstance(f, tvm.tirx.PrimFunc) and "matmul" in gv.name_hint]
    text = TiledReduction().apply(func, target, False).mod["main"].script()
    # the multiply-add, its zero-init and the write-back each skip the 14th row
    assert text.count("T.where(") >= 3 and "< T.int64(13)" in text
