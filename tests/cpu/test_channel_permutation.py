"""Channel shuffles and concatenations in NHWC: mcc.ChannelPermutation (a reshape / transpose
chain that only reorders one axis, as one reorder on that axis) and how the Injective rule
schedules the channel axis (an interleave unrolled by its group count; concatenation parts
and non-vector counts as pieces of whole vectors and a tail)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

import mcc
from conftest import make_model
from mcc.build.pipeline import optimize
from mcc.frontends import import_model
from mcc.passes import channel_permutation, count_ops
from mcc.schedule.rules import Injective

X86 = {"kind": "llvm", "mcpu": "znver4"}


def _shape_const(name, dims):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, TensorProto.INT64, [len(dims)], dims))


def shuffle_unit(channels=24, groups=3, hw=8):
    """A ShuffleNet unit: grouped 1x1 conv, ReLU, channel shuffle, depthwise 3x3, grouped
    1x1 conv, residual add."""
    rng = np.random.default_rng(3)
    per = channels // groups
    return make_model(
        [_shape_const("s5", [1, groups, per, hw, hw]), _shape_const("s4", [1, channels, hw, hw]),
         helper.make_node("Conv", ["x", "w1"], ["c1"], group=groups),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Reshape", ["r1", "s5"], ["g"]),
         helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
         helper.make_node("Reshape", ["t", "s4"], ["sh"]),
         helper.make_node("Conv", ["sh", "wd"], ["d"], group=channels, pads=[1] * 4),
         helper.make_node("Conv", ["d", "w2"], ["c2"], group=groups),
         helper.make_node("Add", ["c2", "x"], ["s"]),
         helper.make_node("Relu", ["s"], ["y"])],
        [("x", [1, channels, hw, hw])], [("y", [1, channels, hw, hw])],
        [("w1", rng.standard_normal((channels, per, 1, 1)) * 0.3),
         ("wd", rng.standard_normal((channels, 1, 3, 3)) * 0.3),
         ("w2", rng.standard_normal((channels, per, 1, 1)) * 0.3)], "shuffle_unit")


def _chain_module(x_shape, steps):
    """main(x) = the reshape / permute_dims chain ``steps`` applied to x."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for kind, arg in steps:
                op = relax.op.reshape if kind == "reshape" else relax.op.permute_dims
                y = bb.emit(op(y, arg))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, x):
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


# the channel shuffle as ConvertLayout leaves it: NHWC -> NCHW, the shuffle, NCHW -> NHWC
NCHW_SHUFFLE_IN_NHWC = [("permute", [0, 3, 1, 2]), ("reshape", (1, 3, 4, 5, 5)),
                        ("permute", [0, 2, 1, 3, 4]), ("reshape", (1, 12, 5, 5)),
                        ("permute", [0, 2, 3, 1])]


@pytest.mark.parametrize("steps,expected_ops", [
    (NCHW_SHUFFLE_IN_NHWC, {"relax.permute_dims": 1, "relax.reshape": 2}),
    # two interleaves that undo each other: nothing left
    ([("reshape", (1, 5, 5, 2, 6)), ("permute", [0, 1, 2, 4, 3]), ("reshape", (1, 5, 5, 12)),
      ("reshape", (1, 5, 5, 6, 2)), ("permute", [0, 1, 2, 4, 3]), ("reshape", (1, 5, 5, 12))],
     {"relax.permute_dims": 0, "relax.reshape": 0}),
    # two that compose to no (g, k) transpose: one gather
    ([("reshape", (1, 5, 5, 2, 6)), ("permute", [0, 1, 2, 4, 3]), ("reshape", (1, 5, 5, 12)),
      ("reshape", (1, 5, 5, 4, 3)), ("permute", [0, 1, 2, 4, 3]), ("reshape", (1, 5, 5, 12))],
     {"relax.permute_dims": 0, "relax.reshape": 0, "relax.take": 1}),
])
def test_single_axis_chains_become_one_reorder_on_that_axis(steps, expected_ops):
    mod = _chain_module((1, 5, 5, 12), steps)
    after = channel_permutation(mod)
    ops = count_ops(after)
    for op, n in expected_ops.items():
        assert ops.get(op, 0) == n, ops
    if expected_ops["relax.permute_dims"]:
        (permute,) = [b.value for b in after["main"].body.blocks[0].bindings
                      if getattr(b.value.op, "name", "") == "relax.permute_dims"]
        assert [int(a) for a in permute.attrs.axes] == [0, 1, 2, 4, 3]  # NHWC, last axis
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 12)).astype("float32")
    np.testing.assert_array_equal(_run(after, x), _run(mod, x))


def test_a_real_transpose_is_left_alone():
    steps = [("permute", [0, 3, 1, 2]), ("reshape", (1, 12, 25)), ("reshape", (1, 12, 5, 5)),
             ("permute", [0, 2, 1, 3])]  # moves H against C: not one axis
    mod = _chain_module((1, 5, 5, 12), steps)
    after = channel_permutation(mod)
    assert count_ops(after)["relax.permute_dims"] == 2 and "relax.take" not in count_ops(after)
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 12)).astype("float32")
    np.testing.assert_array_equal(_run(after, x), _run(mod, x))


def test_take_for_an_arbitrary_single_axis_reorder():
    from mcc.passes.channel_permutation import _reorder

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 6), "float32"))
    perm = np.array([5, 0, 3, 1, 4, 2])
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(_reorder(bb, x, 1, perm))
        bb.emit_func_output(out)
    mod = bb.get()
    assert count_ops(mod).get("relax.take") == 1
    x = np.arange(12, dtype="float32").reshape(2, 6)
    np.testing.assert_array_equal(_run(mod, x), x[:, perm])


def test_shuffle_unit_is_reordered_in_nhwc_and_matches_onnxruntime():
    model = shuffle_unit()
    target = tvm.target.Target(X86)
    mod, passes = optimize(import_model(model, {}, None).mod, target, layout="NHWC")
    assert "mcc.ChannelPermutation" in passes
    # the shuffle's 5-D view is of the NHWC tensor, [1, H, W, g, k]; no NCHW [1, g, k, H, W]
    scripts = [f.script() for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    dims = ", ".join(f"T.int64({d})" for d in (1, 8, 8, 3, 8))
    nchw_dims = ", ".join(f"T.int64({d})" for d in (1, 3, 8, 8, 8))
    assert any(dims in s for s in scripts)
    assert not any(nchw_dims in s for s in scripts)
    compiled = mcc.compile(model, target=X86, layout="NHWC")  # verifies vs ORT itself
    feed = {"x": np.random.default_rng(1).standard_normal((1, 24, 8, 8)).astype("float32")}
    (expected,) = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    (actual,) = compiled.run(feed).values()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def _interleave_kernel(parts=4, per=34, hw=6):
    """concat of ``parts`` tensors, ReLU, then the NHWC channel interleave, as one PrimFunc."""
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{j}", relax.TensorType((1, hw, hw, per), "float32"))
          for j in range(parts)]
    with bb.function("main", xs):
        with bb.dataflow():
            c = bb.emit(relax.op.nn.relu(relax.op.concat(xs, axis=3)))
            g = bb.emit(relax.op.reshape(c, (1, hw, hw, parts, per)))
            t = bb.emit(relax.op.permute_dims(g, [0, 1, 2, 4, 3]))
            out = bb.emit_output(relax.op.reshape(t, (1, hw, hw, parts * per)))
        bb.emit_func_output(out)
    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(),
                                    relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    mod = seq(bb.get())
    (func,) = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    return func


@pytest.mark.parametrize("per", [34, 28])  # 136 channels (no whole vectors), 112 (7 x 16)
def test_interleave_is_unrolled_by_the_group_count(per):
    """The output channel c = i * 4 + j: split by 4 and the 4 unrolled, not vectorised
    across the scattered reads nor fused into the parallel index."""
    func = _interleave_kernel(per=per)
    sch = Injective().apply(func, tvm.target.Target(X86), False)
    text = sch.mod["main"].script()
    assert "T.unroll(T.int64(4))" in text, text
    assert "T.vectorized" not in text
    lowered = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr(
        "global_symbol", "main")}), tvm.target.Target(X86))
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((1, 6, 6, per)).astype("float32") for _ in range(4)]
    out = tvm.runtime.tensor(np.zeros((1, 6, 6, 4 * per), "float32"))
    lowered["main"](*[tvm.runtime.tensor(x) for x in xs], out)
    expected = np.maximum(np.stack(xs, axis=-1), 0).reshape(1, 6, 6, 4 * per)
    np.testing.assert_array_equal(out.numpy(), expected)


def _concat_relu_kernel(parts, hw=6):
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{j}", relax.TensorType((1, hw, hw, c), "float32"))
          for j, c in enumerate(parts)]
    with bb.function("main", xs):
        with bb.dataflow():
            cat = relax.op.concat(xs, axis=3) if len(xs) > 1 else xs[0]
            out = bb.emit_output(relax.op.nn.relu(cat))
        bb.emit_func_output(out)
    seq = tvm.transform.Sequential([relax.transform.LegalizeOps(),
                                    relax.transform.AnnotateTIROpPattern(),
                                    relax.transform.FuseOps(), relax.transform.FuseTIR()])
    (func,) = [f for f in seq(bb.get()).functions.values()
               if isinstance(f, tvm.tirx.PrimFunc)]
    return func


@pytest.mark.parametrize("parts,loops", [
    ([3], ["range(T.int64(3))"]),  # an RGB image's padding copy: 588 -> 317 us stem conv
    ([34], ["T.vectorized(T.int64(16))", "range(T.int64(32), T.int64(34))"]),
    ([68, 68, 68, 68], ["T.vectorized(T.int64(16))", "range(T.int64(64), T.int64(68))",
                        "range(T.int64(68), T.int64(136))", "range(T.int64(204), T.int64(272))"]),
])
def test_channel_axis_runs_in_pieces(parts, loops):
    """An innermost axis of no whole vectors, or along which a concatenation changes part,
    is its own loop (not fused into the parallel index): whole vectors and a tail, one
    piece per part. Fused and scalar, a 28x28x34 ReLU took 46 us, 2.7 us in pieces; a
    14x14 4 x 68-channel concatenation 42 -> 9 us."""
    func = _concat_relu_kernel(parts)
    sch = Injective().apply(func, tvm.target.Target(X86), False)
    text = sch.mod["main"].script()
    for loop in loops:
        assert loop in text, text
    assert "T.parallel(T.int64(36))" in text  # the 6x6 pixels only
    lowered = tvm.compile(tvm.IRModule({"main": sch.mod["main"].with_attr(
        "global_symbol", "main")}), tvm.target.Target(X86))
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((1, 6, 6, c)).astype("float32") for c in parts]
    out = tvm.runtime.tensor(np.zeros((1, 6, 6, sum(parts)), "float32"))
    lowered["main"](*[tvm.runtime.tensor(x) for x in xs], out)
    np.testing.assert_array_equal(out.numpy(), np.maximum(np.concatenate(xs, axis=-1), 0))
