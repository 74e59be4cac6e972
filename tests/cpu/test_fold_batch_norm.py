"""mcc.FoldBatchNorm: structural (BN gone, convs kept) and numeric (same outputs)."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from conftest import conv_bn_model
from mcc.passes import count_ops, fold_batch_norm


def _imported(with_bias):
    """Straight from TVM's importer: mcc's import lets onnxslim fold BN before TVM sees it."""
    return from_onnx(conv_bn_model(with_bias=with_bias), keep_params_in_input=False)


def _run(mod, x):
    mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                    relax.transform.LegalizeOps()])(mod)
    vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.mark.parametrize("with_bias", [True, False])
def test_batch_norm_is_folded_into_the_conv(with_bias):
    mod = relax.transform.FoldConstant()(_imported(with_bias))
    before = count_ops(mod)
    assert before["relax.nn.batch_norm"] == 1
    after = count_ops(fold_batch_norm(mod))
    assert after["relax.nn.batch_norm"] == 0
    assert after["relax.nn.conv2d"] == 1
    assert after["relax.add"] == 1  # one bias add replaces (bias add +) BN


@pytest.mark.parametrize("with_bias", [True, False])
def test_folding_preserves_numerics(with_bias):
    mod = relax.transform.FoldConstant()(_imported(with_bias))
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(_run(fold_batch_norm(mod), x), _run(mod, x), rtol=1e-5, atol=1e-5)


def test_non_constant_statistics_are_left_alone():
    from tvm.script import relax as R

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((2, 2, 1, 1), "float32"),
                 g: R.Tensor((2,), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, w)
                bn = R.nn.batch_norm(c, g, g, g, g, axis=1)
                y = bn[0]
                R.output(y)
            return y

    assert count_ops(fold_batch_norm(Module))["relax.nn.batch_norm"] == 1


def _relu_bn_module(rng):
    """x -> relu -> batch_norm with constant statistics: a BN after no conv (DenseNet-style)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 3, 5, 5), "float32"))
    gamma, beta, mean = (relax.const(rng.standard_normal(3).astype(np.float32)) for _ in range(3))
    var = relax.const(rng.uniform(0.5, 2, 3).astype(np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            r = bb.emit(relax.op.nn.relu(x))
            bn = bb.emit(relax.op.nn.batch_norm(r, gamma, beta, mean, var, axis=1))
            y = bb.emit_output(relax.TupleGetItem(bn, 0))
        bb.emit_func_output(y)
    return bb.get()


def test_batch_norm_after_no_conv_becomes_one_scale_and_shift():
    """Its statistics folded here in numpy, so FoldConstant compiles no kernel for them."""
    rng = np.random.default_rng(0)
    mod = _relu_bn_module(rng)
    folded = fold_batch_norm(mod)
    ops = count_ops(folded)
    assert ops["relax.nn.batch_norm"] == 0
    assert ops["relax.multiply"] == 1 and ops["relax.add"] == 1
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x), _run(mod, x), rtol=1e-5, atol=1e-5)
