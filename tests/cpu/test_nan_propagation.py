"""NaN goes through float max / min (Relu, Clip, MaxPool, ReduceMax/Min, Max/Min, ...) as in
ONNX Runtime: the rewrite in the scheduled TIR (mcc.build.nan) keeps the kernels' count."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from conftest import make_model

X = np.array([[np.nan, -1, 2, np.inf], [-np.inf, 0.5, -3, 7],
              [1, np.nan, -0.25, 4], [6.5, -2, 3, 0]], np.float32)
X2 = np.array([[1, np.nan, 0, 9], [np.nan, 0, -4, 2],
               [np.nan, 1, 1, np.nan], [0, 0, 8, -8]], np.float32)
CONSTS = {"lo": np.float32(0), "hi": np.float32(6)}

CASES = [
    ("Relu", ["x"], {}, [4, 4]),
    ("Clip", ["x", "lo", "hi"], {}, [4, 4]),  # relu6
    ("LeakyRelu", ["x"], {"alpha": 0.1}, [4, 4]),
    ("Max", ["x", "x2"], {}, [4, 4]),
    ("Min", ["x", "x2"], {}, [4, 4]),
    ("ReduceMax", ["x"], {"axes": [1], "keepdims": 0}, [4]),
    ("ReduceMin", ["x"], {"axes": [0], "keepdims": 0}, [4]),
    ("Sigmoid", ["x"], {}, [4, 4]),
    ("Tanh", ["x"], {}, [4, 4]),
]


def _check(model, feed, compiled, reduction=False, expected_nan=None):
    expected = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = compiled.run(feed)[model.graph.output[0].name]
    if reduction:
        # ORT (1.32) reduces with a running max, x > m never true for NaN: ReduceMax/Min
        # keep a NaN only in the first place of the reduced axis, MaxPool none at all. mcc
        # gives NaN wherever one is reduced, as the ONNX reference implementation (numpy)
        # does: a superset of ORT's NaNs.
        from onnx.reference import ReferenceEvaluator

        assert not (np.isnan(expected) & ~np.isnan(got)).any()
        expected = ReferenceEvaluator(model).run(None, feed)[0]
        if expected_nan is not None:  # the reference's MaxPool keeps a window's first NaN
            assert not (np.isnan(expected) & ~np.isnan(got)).any()
            expected = np.where(expected_nan, np.nan, expected)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # NaN == NaN here
    return got


@pytest.mark.parametrize("op, ins, attrs, out", CASES, ids=[c[0] for c in CASES])
def test_nan_like_onnxruntime(op, ins, attrs, out):
    import mcc

    inputs = [("x", [4, 4])] + ([("x2", [4, 4])] if "x2" in ins else [])
    model = make_model([helper.make_node(op, ins, ["y"], **attrs)], inputs, [("y", out)],
                       inits=[(k, v) for k, v in CONSTS.items() if k in ins])
    feed = {"x": X, **({"x2": X2} if "x2" in ins else {})}
    got = _check(model, feed, mcc.compile(model), reduction=op.startswith("Reduce"))
    assert np.isnan(got).any()


def test_maxpool():
    import mcc

    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                         strides=[2, 2])],
                       [("x", [1, 2, 4, 4])], [("y", [1, 2, 2, 2])])
    x = np.stack([X, X2])[None]
    windows = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 2, 4)
    nan_windows = np.isnan(windows).any(-1)
    got = _check(model, {"x": x}, mcc.compile(model), reduction=True, expected_nan=nan_windows)
    assert np.isnan(got).sum() == 5


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_infinities_and_all_nan(op):
    """A column holding +-inf and finite values, an all-NaN one, an all-inf one."""
    import mcc

    inf = np.inf if op == "ReduceMin" else -np.inf
    x = np.array([[inf, np.nan, inf, 1], [7, np.nan, inf, 2], [-4, np.nan, inf, 3]],
                 np.float32)
    model = make_model([helper.make_node(op, ["x"], ["y"], axes=[0], keepdims=0)],
                       [("x", [3, 4])], [("y", [4])])
    got = _check(model, {"x": x}, mcc.compile(model), reduction=True)
    expected = [-4 if op == "ReduceMin" else 7, np.nan, inf, 1 if op == "ReduceMin" else 3]
    np.testing.assert_array_equal(got, np.array(expected, np.float32))


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
    got = _check(model, {"x": x}, compiled)
    assert np.isnan(got[:, :, :2, :2]).all()  # every output the NaN pixel reaches
    assert not np.isnan(got[:, :, 3:, 3:]).any()


def test_finite_and_integer_kernels_untouched():
    """The rewrite leaves integer max / min alone; max(x, 0) becomes one select."""
    from tvm import te, tirx

    from mcc.build.nan import propagate_nan_func

    xi = te.placeholder((8,), "int32", name="xi")
    yi = te.compute((8,), lambda i: te.min(te.max(xi[i], -128), 127), name="yi")
    f = te.create_prim_func([xi, yi])
    assert propagate_nan_func(f).same_as(f)
    xf = te.placeholder((8,), "float32", name="xf")
    yf = te.compute((8,), lambda i: te.max(xf[i], tirx.const(0, "float32")), name="yf")
    script = propagate_nan_func(te.create_prim_func([xf, yf])).script()
    assert "T.max" not in script and "T.Select(T.float32(0.0) > xf[v_i]" in script


def test_vector_max_without_isnan_for_cuda():
    """CUDA C has no != on float4 (isnan's lowering): vectors get compares and a + b."""
    import tvm
    from tvm import te, tirx

    from mcc.build import nan

    a, b = tirx.Var("a", "float32x4"), tirx.Var("b", "float32x4")
    assert "isnan" not in str(nan._keep_nan(tirx.Max(a, b), vector_isnan=False))
    assert "isnan" in str(nan._keep_nan(tirx.Max(a, b), vector_isnan=True))
    x = te.placeholder((8,), "float32", name="x")
    y = te.placeholder((8,), "float32", name="y")
    z = te.compute((8,), lambda i: te.max(x[i], y[i]), name="z")
    cuda = tvm.target.Target({"kind": "cuda", "arch": "sm_75"})
    func = te.create_prim_func([x, y, z]).with_attr("target", cuda)
    assert "isnan" in nan.propagate_nan_func(func).script()  # scalars: isnan is fine


def test_whole_tensor_reduce_max_builds_vectorised():
    """ReduceMax over a whole [1, 97, 32] tensor (a log-mel front end's normaliser): its
    "any value other than -inf" flags are vectorised; combined as bools they failed LLVM's
    verifier ("or <16 x i8>, <16 x i1>")."""
    from onnx import TensorProto

    import mcc

    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["y"], keepdims=0)], "reduce_all",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 97, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    compiled = mcc.compile(model)
    x = np.random.default_rng(0).standard_normal((1, 97, 32)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_array_equal(compiled.run({"x": x})["y"], want)


def test_cuda_vector_form_keeps_nan_when_run(monkeypatch):
    """The compare-only form CUDA vectors get (``a > b ? a : (a <= b ? b : a + b)``), run
    here on LLVM float32x4 with NaN in either operand, both, and +-inf (the same form ran
    on an H200 as float4: benchmarks/gpu_check.py's vec_nan)."""
    import tvm
    from gpu_check import vector_nan_inputs
    from tvm import te
    from tvm.s_tir import Schedule

    from mcc.build import nan

    vector_forms = []
    keep = nan._keep_nan

    def cuda_form(expr, vector_isnan=True):
        vector_forms.append(expr.ty.dtype.lanes)
        return keep(expr, vector_isnan=False)

    monkeypatch.setattr(nan, "_keep_nan", cuda_form)
    n = 4096
    x = te.placeholder((n,), "float32", name="x")
    y = te.placeholder((n,), "float32", name="y")
    zmax = te.compute((n,), lambda i: te.max(x[i], y[i]), name="zmax")
    zmin = te.compute((n,), lambda i: te.min(x[i], y[i]), name="zmin")
    sch = Schedule(te.create_prim_func([x, y, zmax, zmin]))
    for block in ("zmax", "zmin"):
        (loop,) = sch.get_loops(sch.get_sblock(block))
        _, lanes = sch.split(loop, [None, 4])
        sch.vectorize(lanes)
    lib = tvm.compile(sch.mod, target="llvm", tir_pipeline=nan.register())
    assert sorted(vector_forms) == [4, 4]  # both rewritten on float32x4
    a, b = vector_nan_inputs(n)
    out = [tvm.runtime.tensor(np.zeros(n, np.float32)) for _ in range(2)]
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b), *out)
    nan_in = np.isnan(a) | np.isnan(b)
    assert nan_in.sum() > 1000
    for got, want in zip(out, (np.fmax(a, b), np.fmin(a, b))):
        got = got.numpy()
        np.testing.assert_array_equal(np.isnan(got), nan_in)
        np.testing.assert_array_equal(got[~nan_in], want[~nan_in])
