"""mcc.FoldConstantShapes: reshapes / transposes of constants become constants, same outputs."""

import numpy as np
import tvm
from tvm import relax

from mcc.passes import count_ops, fold_constant_shapes


def _module():
    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape=(2, 4), dtype="float32"))
    w = relax.const(rng.standard_normal((3, 4)).astype("float32"))
    b = relax.const(rng.standard_normal(3).astype("float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            wt = bb.emit(relax.op.permute_dims(w, [1, 0]))  # Gemm transB
            bias = bb.emit(relax.op.reshape(b, (1, 3)))
            y = bb.emit(relax.op.add(relax.op.matmul(x, wt), bias))
            xt = bb.emit(relax.op.permute_dims(x, [1, 0]))  # not a constant: stays
            out = bb.emit_output(relax.Tuple([y, xt]))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, data):
    mod = relax.transform.LegalizeOps()(mod)
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return [t.numpy() for t in vm["main"](tvm.runtime.tensor(data))]


def test_constant_reshape_and_transpose_are_folded():
    before = count_ops(_module())
    after = count_ops(fold_constant_shapes(_module()))
    assert before["relax.permute_dims"] == 2 and before["relax.reshape"] == 1
    assert after["relax.permute_dims"] == 1 and after["relax.reshape"] == 0


def test_folding_keeps_the_outputs():
    data = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    for got, want in zip(_run(fold_constant_shapes(_module()), data), _run(_module(), data)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
