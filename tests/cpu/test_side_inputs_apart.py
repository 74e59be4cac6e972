"""mcc.SideInputsApart: a small tensor computed at run time for the epilogue of a conv or
matmul (a dynamically quantized bias) gets a kernel of its own instead of being fused
into, and recomputed per element of, the conv's kernel. The dynamically quantized conv
itself is tested in test_dynamic_quantization.py."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from mcc.passes import side_inputs_apart


def _module(kind: str = "bias"):
    """main(x, s) = conv2d(x, w) + floor(b / s) per channel ("bias"); x * 2 in place of the
    conv ("no_conv"); conv2d(x, w) * sigmoid(its spatial mean) ("squeeze_excitation")."""
    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 12, 12, 8), "float32"))
    s = relax.Var("s", relax.TensorType((), "float32"))
    w = relax.const(rng.standard_normal((3, 3, 8, 16)).astype("float32"))
    b = relax.const(rng.standard_normal(16).astype("float32") * 4)
    with bb.function("main", [x, s]):
        with bb.dataflow():
            if kind == "no_conv":
                y = bb.emit(relax.op.multiply(relax.op.concat([x, x], axis=3),
                                              relax.const(2.0)))
            else:
                y = bb.emit(relax.op.nn.conv2d(x, w, padding=1, data_layout="NHWC",
                                               kernel_layout="HWIO"))
            if kind == "squeeze_excitation":
                scale = bb.emit(relax.op.sigmoid(relax.op.mean(y, axis=[1, 2], keepdims=True)))
                out = bb.emit_output(relax.op.multiply(y, scale))
            else:
                bias = bb.emit(relax.op.floor(relax.op.divide(b, s)))
                out = bb.emit_output(relax.op.add(y, bias))
        bb.emit_func_output(out)
    return bb.get()


def _fused(mod, apart: bool):
    T = relax.transform
    mod = T.AnnotateTIROpPattern()(T.LegalizeOps()(mod))
    if apart:
        mod = side_inputs_apart(mod)
    return T.FuseTIR()(T.FuseOps()(mod))


def _kernel_names(mod) -> list[str]:
    return [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


def _run(mod, x, s):
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(s)).numpy()


def test_a_run_time_bias_of_a_conv_is_a_kernel_of_its_own():
    before = _kernel_names(_fused(_module(), apart=False))
    after = _kernel_names(_fused(_module(), apart=True))
    assert [n for n in before if "conv2d" in n and "floor" in n]  # fused in: once per pixel
    (conv,) = [n for n in after if "conv2d" in n]
    assert "floor" not in conv and "divide" not in conv
    assert [n for n in after if "floor" in n]


def test_the_result_is_unchanged():
    x = np.random.default_rng(1).standard_normal((1, 12, 12, 8)).astype("float32")
    s = np.array(0.37, "float32")
    want = _run(_fused(_module(), apart=False), x, s)
    np.testing.assert_allclose(_run(_fused(_module(), apart=True), x, s), want,
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["no_conv", "squeeze_excitation"])
def test_other_small_tensors_keep_their_fusion(kind):
    """A per-channel tensor added to a plain elementwise result (no conv or matmul whose
    write-back would recompute it), or computed from the model's data (a squeeze-excitation
    scale): FuseOps decides as before."""
    assert (_kernel_names(_fused(_module(kind), apart=True))
            == _kernel_names(_fused(_module(kind), apart=False)))
