"""Register tiles on the stack (mcc.build.stack_tiles): a kernel's ``local`` accumulator
tile over 1 KiB is a stack ``alloca``, not a workspace-pool call pair per tile, with the
same results."""

import shutil
import subprocess

import numpy as np
import pytest
import tvm
from test_bf16 import needs_bf16

from mcc.targets import resolve_target

# a 1x1 bf16 conv with 16 input channels: 14 pixels x 2 blocks of fp32 accumulators
# (1792 bytes) per 8 vdpbf16ps steps, MobileNetV2's 112x112 expand conv in small
GEOMETRY = (1, 4, 28, 16, 32, 1, 1, (1, 1), (0, 0, 0, 0))


def _kernel():
    from mcc.passes.bf16 import BConvShape, bconv2d_func
    from mcc.schedule.rules.bf16 import schedule_kernel

    shape = BConvShape(*GEOMETRY)
    func = schedule_kernel(bconv2d_func(shape, bf16_input=True))
    return shape, tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def _build(mod, pipeline):
    return tvm.compile(mod, target=resolve_target(None).tvm_target(), tir_pipeline=pipeline)


def _without_tiles_on_stack():
    """mcc's TIR pipeline less this pass (what it was before)."""
    from tvm.tirx import compilation_pipeline

    from mcc.build.bf16_convert import Bf16Convert
    from mcc.build.nan import PropagateNaN

    def pipeline():
        inner, host, device = compilation_pipeline.get_tir_pipeline("s_tir")
        return tvm.transform.Sequential([inner, PropagateNaN, Bf16Convert]), host, device

    compilation_pipeline.register_tir_pipeline("mcc-test-heap-tiles", pipeline)
    return "mcc-test-heap-tiles"


def _asm(lib, tmp_path):
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump is not installed")
    lib.export_library(tmp_path / "k.so")
    return subprocess.run([objdump, "-d", str(tmp_path / "k.so")], capture_output=True,
                          text=True, check=True).stdout


def test_local_tile_is_marked_for_the_stack():
    from tvm.tirx import compilation_pipeline

    from mcc.build.stack_tiles import ANNOTATION, MAX_BYTES, tiles_on_stack

    seen = {}

    def pipeline():
        inner, host, device = compilation_pipeline.get_tir_pipeline("s_tir")

        @tvm.tirx.transform.prim_func_pass(opt_level=0, name="capture")
        def capture(func, _mod, _ctx):
            seen["func"], seen["count"] = tiles_on_stack(func)
            return func

        return tvm.transform.Sequential([inner, capture]), host, device

    compilation_pipeline.register_tir_pipeline("mcc-test-capture", pipeline)
    _build(_kernel()[1], "mcc-test-capture")
    assert seen["count"] == 1
    assert ANNOTATION in seen["func"].script()
    assert MAX_BYTES >= 1792


@needs_bf16
def test_no_workspace_call_per_tile(tmp_path):
    from mcc.build import nan

    _, mod = _kernel()
    assert "AllocWorkspace" in _asm(_build(mod, _without_tiles_on_stack()), tmp_path)
    assert "AllocWorkspace" not in _asm(_build(mod, nan.register()), tmp_path)


@needs_bf16
def test_stack_tile_kernel_matches_numpy():
    from mcc.build import nan
    from mcc.passes.bf16 import pack_weight
    from mcc.passes.bf16_bits import bf16_round, to_bf16_bits

    shape, mod = _kernel()
    lib = _build(mod, nan.register())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(shape.n, shape.h, shape.w, shape.ic)).astype(np.float32)
    w = rng.normal(size=(shape.oc, 1, 1, shape.ic)).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((shape.n, shape.h, shape.w, shape.oc), np.float32))
    lib["main"](tvm.runtime.tensor(to_bf16_bits(x)), tvm.runtime.tensor(pack_weight(w)), out)
    want = np.einsum("nhwc,oc->nhwo", bf16_round(x).astype(np.float64),
                     bf16_round(w[:, 0, 0, :]).astype(np.float64))
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)
