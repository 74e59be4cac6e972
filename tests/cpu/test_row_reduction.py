"""RowReduction: softmax and normalisation kernels, vectorised row by row.

Numeric tests compile tiny ONNX graphs with mcc (which verifies against ONNX Runtime
itself) and compare again on fresh inputs, over row lengths the vector width divides
(partial results in lanes), does not divide (a scalar tail), and rows made of several
axes. Structural tests check which kernels the rule takes and what it does to them.
"""

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import helper

import mcc
from conftest import make_model
from mcc.build.pipeline import optimize
from mcc.frontends import import_model
from mcc.schedule.rules import RowReduction, rules_for

X86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2}


def softmax(shape, axis=-1):
    return make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)],
                      [("x", shape)], [("y", shape)], name="softmax")


def layer_norm(shape):
    rng = np.random.default_rng(3)
    c = shape[-1]
    return make_model(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1,
                          epsilon=1e-5)],
        [("x", shape)], [("y", shape)],
        [("g", rng.standard_normal(c)), ("b", rng.standard_normal(c))], "layer_norm")


def residual_rms_norm(shape):
    """(x + r) * rsqrt(mean((x + r)^2) + eps) * g: a torch-style decomposed RMS norm."""
    rng = np.random.default_rng(4)
    return make_model(
        [helper.make_node("Add", ["x", "r"], ["s"]),
         helper.make_node("Mul", ["s", "s"], ["sq"]),
         helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
         helper.make_node("Add", ["ms", "eps"], ["me"]),
         helper.make_node("Sqrt", ["me"], ["rt"]),
         helper.make_node("Div", ["s", "rt"], ["n"]),
         helper.make_node("Mul", ["n", "g"], ["y"])],
        [("x", shape), ("r", shape)], [("y", shape)],
        [("eps", np.float32(1e-6)), ("g", rng.standard_normal(shape[-1]))], "rms_norm")


MODELS = {
    "softmax_lanes": lambda: softmax([1, 2, 16, 64]),  # 64 = 4 x 16 lanes
    "softmax_tail": lambda: softmax([1, 3, 5, 37]),  # 37: no vector width divides it
    "softmax_vit": lambda: softmax([1, 2, 9, 197]),
    "softmax_short": lambda: softmax([3, 20]),  # 4-wide partial results
    "softmax_last_lane": lambda: softmax([2, 4, 33]),  # 16, 16 and 1 in the last chunk
    "softmax_eight": lambda: softmax([2, 24, 40]),  # 40: 8-wide partial results
    "softmax_axis1": lambda: softmax([1, 6, 4, 5], axis=1),  # not the last axis
    "layer_norm": lambda: layer_norm([1, 7, 96]),
    "layer_norm_tail": lambda: layer_norm([1, 5, 50]),
    "rms_norm": lambda: residual_rms_norm([1, 6, 48]),
}


def _inputs(model, seed):
    rng = np.random.default_rng(seed)
    return {i.name: (rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim])
                     * 4).astype(np.float32) for i in model.graph.input}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_row_reductions_match_onnxruntime(name):
    model = MODELS[name]()
    compiled = mcc.compile(model, target=X86)  # verifies against ONNX Runtime itself
    feed = _inputs(model, seed=1)
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    (actual,) = compiled.run(feed).values()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length,where", [(32, 17), (37, 36)])  # 37: in the partial chunk
def test_a_nan_in_a_row_reaches_that_row_only(length, where):
    model = softmax([1, 4, length])
    compiled = mcc.compile(model, target=X86)
    x = _inputs(model, seed=2)["x"]
    x[0, 1, where] = np.nan
    (y,) = compiled.run({"x": x}).values()
    assert np.isnan(y[0, 1]).all()
    assert not np.isnan(y[0, [0, 2, 3]]).any()


def test_a_row_masked_to_minus_infinity_in_its_last_chunk():
    model = softmax([2, 37])
    compiled = mcc.compile(model, target=X86)
    x = np.zeros((2, 37), np.float32)
    x[:, 33:] = -np.inf  # attention masks: the partial chunk holds only masked entries
    (y,) = compiled.run({"x": x}).values()
    np.testing.assert_allclose(y[:, :33], 1 / 33, rtol=1e-6)
    assert (y[:, 33:] == 0).all()


def _kernel(model, word):
    mod, _ = optimize(import_model(model, {}, None).mod, tvm.target.Target(X86))
    (func,) = [f for gv, f in mod.functions_items()
               if isinstance(f, tvm.tirx.PrimFunc) and word in gv.name_hint]
    return func


def _schedule(func):
    sch = RowReduction().apply(func, tvm.target.Target(X86), False)
    return None if sch is None else sch.mod["main"].script()


def test_partial_results_fill_the_vector_lanes():
    text = _schedule(_kernel(softmax([1, 2, 16, 64]), "softmax"))
    assert text.count("T.parallel") == 1  # one pass over the rows does everything
    assert "maxelem_rf" in text and "expsum_rf" in text  # both reductions in 16 lanes
    assert text.count("T.vectorized(") >= 4  # max, exp, sum, normalise


def test_sixteen_partial_results_fold_to_four_in_a_vector_step():
    """The lanes -> 1 step is a chain of scalar steps (compare, mask, blend each for the
    NaN-keeping max): 16 partial results are folded to 4 by 4-wide vector steps first.
    MiniLM's [12, 128, 128] softmax: 155 -> 112 us, one thread."""
    text = _schedule(_kernel(softmax([1, 2, 16, 64]), "softmax"))
    assert "maxelem_rf_1" in text and "expsum_rf_1" in text
    assert text.count("T.vectorized(T.int64(4))") == 2
    # rows with a partial last chunk keep one level (its bound is on the first)
    assert "_rf_1" not in _schedule(_kernel(softmax([1, 3, 5, 37]), "softmax"))


def test_rows_the_vector_width_does_not_divide_keep_their_partial_last_chunk_bounded():
    text = _schedule(_kernel(softmax([1, 3, 5, 37]), "softmax"))
    # 37 has no 4-, 8- or 16-wide divisor: 3 chunks of 16 lanes, the last one bounded
    assert "maxelem_rf" in text and "expsum_rf" in text
    assert text.count("T.where(") == 2 and "< T.int64(37)" in text
    assert "partition" in text  # elementwise steps: 32 vectorised, 5 scalar


def test_layer_norm_statistics_are_vectorised():
    text = _schedule(_kernel(layer_norm([1, 7, 96]), "layer_norm"))
    assert text.count("_rf") >= 2 and "T.parallel(T.int64(7))" in text


def test_a_reduction_over_a_leading_axis_is_not_taken():
    assert _schedule(_kernel(softmax([1, 6, 4, 5], axis=1), "softmax")) is None


def test_it_comes_before_dlights_reduction_rule():
    names = [type(r).__name__ for r in rules_for(tvm.target.Target(X86))]
    assert names.index("RowReduction") < names.index("Reduction")


def test_a_matrix_vector_product_is_not_taken():
    """W[k, n] is read down its columns: partial results along k would be gathers."""
    rng = np.random.default_rng(8)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                        helper.make_node("Add", ["m", "b"], ["y"])],
                       [("x", [1, 64])], [("y", [1, 40])],
                       [("w", rng.standard_normal((64, 40))), ("b", rng.standard_normal(40))])
    assert _schedule(_kernel(model, "matmul")) is None
