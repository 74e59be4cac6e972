"""bf16 roundings as vcvtneps2bf16 (mcc.build.bf16_convert): the integer round-to-nearest-
even formula of mcc's bf16 kernels becomes one instruction per vector on AVX-512 BF16,
with the same bits (denormals aside), and nothing else is rewritten."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from test_bf16 import needs_bf16

from mcc.targets import resolve_target


def _cast_kernel(lanes: int = 16, formula=None):
    """A vectorised fp32 -> bf16 elementwise kernel (the cast a handoff's producer ends
    with), or one computing ``formula(x)`` to uint16 instead."""
    from tvm import s_tir, te

    from mcc.passes.bf16_bits import f32_to_bf16

    x = te.placeholder((64, 32), "float32", name="x")
    y = te.compute(x.shape, lambda i, j: (formula or f32_to_bf16)(x[i, j]), name="y")
    sch = s_tir.Schedule(te.create_prim_func([x, y]).with_attr("global_symbol", "main"))
    _, j = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(sch.split(j, [None, lanes])[1])
    return sch.mod


def _build(mod):
    from mcc.build import nan

    return tvm.compile(mod, target=resolve_target(None).tvm_target(),
                       tir_pipeline=nan.register())


def _asm(lib, tmp_path):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    so = tmp_path / "k.so"
    lib.export_library(so)
    return subprocess.run([objdump, "-d", str(so)], capture_output=True, text=True,
                          check=True).stdout


def _inputs():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 32)) * 100).astype(np.float32)
    x[0, :6] = [np.inf, -np.inf, 0.0, -0.0, 3.4e38, -3.4e38]
    # exact ties: 1 + 2^-8 rounds down (even), 1 + 3 * 2^-8 up
    x[1, :4] = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8), -(1 + 3 * 2 ** -8)]
    x[2, :2] = [np.nan, -np.nan]
    return x


@needs_bf16
@pytest.mark.parametrize("lanes", [16, 8])
def test_rounding_is_one_instruction_with_the_same_bits(lanes, tmp_path):
    from mcc.passes.bf16_bits import to_bf16_bits

    lib = _build(_cast_kernel(lanes))
    assert "vcvtneps2bf16" in _asm(lib, tmp_path)
    x = _inputs()
    y = tvm.runtime.tensor(np.zeros(x.shape, np.uint16))
    lib["main"](tvm.runtime.tensor(x), y)
    got, want = y.numpy(), to_bf16_bits(x)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(got[finite], want[finite])
    assert np.isnan((got[~finite].astype(np.uint32) << 16).view(np.float32)).all()


def test_other_formulas_are_left_alone():
    """A different constant is not bf16 rounding, nor a 4-lane vector one of the forms:
    not rewritten."""
    from tvm import tirx

    from mcc.build.bf16_convert import convert_bf16_roundings

    def almost(v):
        u = tirx.reinterpret("uint32", v)
        return ((u + tirx.const(0x7FFE, "uint32")) >> tirx.const(16, "uint32")).astype("uint16")

    def lowered(mod):
        with resolve_target(None).tvm_target():
            mod = tvm.s_tir.transform.ConvertBlocksToOpaque()(mod)
            mod = tvm.s_tir.transform.LowerOpaqueBlock()(mod)
            return tvm.tirx.transform.VectorizeLoop()(mod)["main"]

    assert convert_bf16_roundings(lowered(_cast_kernel()))[1] == 1
    assert convert_bf16_roundings(lowered(_cast_kernel(formula=almost)))[1] == 0
    assert convert_bf16_roundings(lowered(_cast_kernel(lanes=4)))[1] == 0  # no 4-lane form


@needs_bf16
def test_bf16_model_rounds_with_the_instruction(tmp_path):
    """A bf16 compile's handoffs (the producers' epilogues) use it."""
    from test_bf16 import inverted_residual_model

    import mcc

    compiled = mcc.compile(inverted_residual_model(), precision="bf16")
    assert compiled.report["verify"]["ok"]
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    so = compiled.export(tmp_path / "m.so")
    asm = subprocess.run([objdump, "-d", str(so)], capture_output=True, text=True,
                         check=True).stdout
    assert "vcvtneps2bf16" in asm
