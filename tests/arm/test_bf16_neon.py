"""ARM bf16 with BFDOT: `mcc compile --target graviton3 --precision bf16` must tensorize every
bf16 kernel with NEON `bfdot` (ARMv8.6-A +bf16), keep the register tile out of the stack,
and, run under qemu-aarch64, agree with the fp32 build (x86, the reference) to a cosine of
0.999 or better, for CNNs and for an attention block. ARM targets without bf16 are refused
(tests/unit/test_options.py)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import tvm
from onnx import helper

from conftest import make_model

TOOLS = ["aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump", "qemu-aarch64", "cmake"]
MISSING = [t for t in TOOLS if shutil.which(t) is None]
needs_qemu = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install g++-aarch64-linux-gnu "
                          "qemu-user cmake)")


def odd_cnn():
    """Geometry the register tile must not assume: 5 input channels (odd: IC padded to
    even), 24 and 40 output channels (not multiples of 16), stride 2 with uneven padding,
    a 1x1 conv, a 7-pixel row (prime: a 1-pixel tile), then a dense layer."""
    rng = np.random.default_rng(11)
    n = helper.make_node
    return make_model(
        [n("Conv", ["x", "w1", "b1"], ["c1"], pads=[0, 0, 1, 1], strides=[2, 2]),
         n("Relu", ["c1"], ["r1"]),
         n("Conv", ["r1", "w2"], ["c2"]),
         n("Add", ["c2", "r1s"], ["s"]),
         n("Conv", ["s", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
         n("Flatten", ["c3"], ["f"]), n("MatMul", ["f", "wm"], ["y"])],
        [("x", [1, 5, 14, 14])], [("y", [1, 10])],
        [("w1", rng.normal(size=(24, 5, 3, 3)) * 0.3), ("b1", rng.normal(size=24) * 0.1),
         ("w2", rng.normal(size=(24, 24, 1, 1)) * 0.2), ("r1s", rng.normal(size=(1, 24, 7, 7))),
         ("w3", rng.normal(size=(40, 24, 3, 3)) * 0.1), ("b3", rng.normal(size=40) * 0.1),
         ("wm", rng.normal(size=(40 * 7 * 7, 10)) * 0.02)],
        "odd_cnn")


def _model(name):
    from test_fp16 import attention_block
    from test_qemu import small_cnn

    return {"small_cnn": small_cnn, "odd_cnn": odd_cnn, "attention_block": attention_block}[name]()


@pytest.mark.parametrize("name", ["small_cnn", "odd_cnn", "attention_block"])
def test_every_bf16_kernel_is_tensorized_with_bfdot(name):
    """The rule schedules every bf16 kernel of a +bf16 aarch64 target with the NEON
    intrinsic (none left to the slow default rules): needs no cross toolchain."""
    from mcc import compile_config
    from mcc.build.lower import run_passes
    from mcc.frontends import import_model
    from mcc.passes.bf16 import bf16_kernel_funcs
    from mcc.schedule.rules.bf16 import schedule_bf16
    from mcc.schedule.rules.bf16_isa import NEON

    config = compile_config(target="graviton3", precision="bf16")
    target = config.target.tvm_target()
    mod, _ = run_passes(import_model(_model(name), {}).mod, target, layout=config.layout,
                        bf16=True)
    names = bf16_kernel_funcs(mod)
    assert names
    with target:
        mod = schedule_bf16(tvm.relax.transform.AttachAttrLayoutFreeBuffers()(mod), target)
    tensorized = {gv.name_hint for gv, f in mod.functions_items()
                  if isinstance(f, tvm.tirx.PrimFunc) and NEON.func in f.script()}
    assert len(tensorized) == len(names), sorted(names)


def _disassembly(so) -> str:
    return subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(so)],
                          capture_output=True, text=True, check=True).stdout


def _bfdot_loops(disassembly: str) -> list[list[str]]:
    """The instructions of each run of bfdot (from the first to the last of a group no
    more than 8 instructions apart): the tensorized inner loops."""
    lines = disassembly.splitlines()
    at = [i for i, line in enumerate(lines) if "\tbfdot\t" in line]
    runs, first = [], 0
    for k in range(1, len(at) + 1):
        if k == len(at) or at[k] - at[k - 1] > 8:
            runs.append(lines[at[first]:at[k - 1] + 1])
            first = k
    return runs


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("geometry", [
    (1, 14, 14, 64, 64, 3, 3, (1, 1), (1, 1, 1, 1)),  # 3x3, pad 1: a 2-pixel x 2-block tile
    (1, 9, 9, 5, 24, 3, 3, (2, 2), (0, 0, 1, 1)),  # odd IC, OC 24, stride 2, uneven pad
    (1, 1, 33, 48, 40, 1, 1, (1, 1), (0, 0, 0, 0)),  # a dense layer: 33 rows
])
def test_kernel_schedule_emits_bfdot_without_spills(fuse, geometry):
    """The rule's fused and unfused (fallback) forms, compiled by TVM's LLVM for graviton3
    (no cross toolchain needed): bfdot in the assembly, no stack traffic between them."""
    from mcc.passes.bf16 import BConvShape, bconv2d_func
    from mcc.schedule.rules.bf16 import schedule_kernel
    from mcc.schedule.rules.bf16_isa import NEON
    from mcc.targets import resolve_target

    func = schedule_kernel(bconv2d_func(BConvShape(*geometry)), fuse=fuse, isa=NEON)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=resolve_target("graviton3").tvm_target())
    loops = _bfdot_loops(lib.mod.inspect_source("asm"))
    assert sum(1 for loop in loops for ln in loop if "\tbfdot\t" in ln) >= 4
    assert not [ln for loop in loops for ln in loop if re.search(r"\[sp\b", ln)]


@needs_qemu
@pytest.mark.parametrize("name", ["small_cnn", "odd_cnn", "attention_block"])
def test_arm_bf16_uses_bfdot_and_matches_fp32_under_qemu(name, tmp_path):
    from test_qemu import require_aarch64_runtime

    import mcc
    from mcc.targets import resolve_target
    from mcc.verify.compare import cosine
    from mcc.verify.emulate import emulated_runner

    require_aarch64_runtime()
    model = _model(name)
    out, = (o.name for o in model.graph.output)
    lines = []
    # verify=True: compile itself runs the aarch64 module under qemu (its runner checks the
    # CPU has the bf16 hwcap) vs ONNX Runtime and requires cosine >= 0.999
    arm = mcc.compile(model, target="graviton3", precision="bf16", progress=lines.append)
    precision = arm.metadata["precision"]
    assert precision["mode"] == "bf16" and precision["bf16_kernels"] >= 3, precision
    verify_line = next(ln for ln in lines if ln.startswith("[mcc] verify  "))
    assert "cosine" in verify_line and verify_line.endswith("(under qemu-aarch64)"), verify_line
    so = arm.export(tmp_path / f"{name}_graviton3_bf16.so")
    loops = _bfdot_loops(_disassembly(so))
    bfdots = sum(1 for loop in loops for ln in loop if "\tbfdot\t" in ln)
    # 16 output channels are 4 bfdot: at least one 16-channel step per kernel
    assert bfdots >= 4 * precision["bf16_kernels"], "expected bfdot in every bf16 kernel"
    spills = [ln for loop in loops for ln in loop if re.search(r"\[sp\b", ln)]
    assert not spills, f"the register tile spills to the stack: {spills[:4]}"

    fp32 = mcc.compile(model, verify=False)  # this machine, fp32
    run_arm = emulated_runner(resolve_target("graviton3"), so, [out])
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    for seed in (1, 2):
        feed = {model.graph.input[0].name:
                np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        got, want = run_arm(feed)[out], fp32.run(feed)[out]
        assert got.dtype == np.float32 and got.shape == want.shape
        print(f"{name} graviton3 bf16 under qemu vs fp32, seed {seed}: cosine "
              f"{cosine(got, want):.7f}, {bfdots} bfdot")
        assert cosine(got, want) >= 0.999


@needs_qemu
def test_cli_compile_graviton3_bf16(tmp_path):
    """The CLI path: compile (verified under qemu), then `mcc info` reads the precision."""
    import onnx
    from click.testing import CliRunner
    from test_qemu import require_aarch64_runtime, small_cnn

    from mcc.cli import main

    require_aarch64_runtime()
    onnx.save(small_cnn(), str(tmp_path / "cnn.onnx"))
    runner = CliRunner()
    result = runner.invoke(main, ["compile", str(tmp_path / "cnn.onnx"), "--target", "graviton3",
                                  "--precision", "bf16", "-o", str(tmp_path / "cnn.so")],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    verify_line = next(ln for ln in result.stderr.splitlines() if ln.startswith("[mcc] verify  "))
    assert "min cosine" in verify_line and verify_line.endswith("ok (under qemu-aarch64)")
    info = runner.invoke(main, ["info", str(tmp_path / "cnn.so")], catch_exceptions=False)
    assert info.exit_code == 0, info.output
    assert "precision: bf16, 3 bf16 kernels" in info.output
