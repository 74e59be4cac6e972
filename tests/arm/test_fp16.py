"""ARM fp16 with FP16 arithmetic: `mcc compile --target rpi5 --precision fp16` (and
graviton3) must emit fp16 NEON multiply-adds (`fmla v.8h`, ARMv8.2-A +fullfp16) and, run
under qemu-aarch64, agree with the fp32 build (x86, the reference) to a cosine of 0.999 or
better, for a CNN and for an attention block."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from onnx import helper

from conftest import make_model

TOOLS = ["aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump", "qemu-aarch64", "cmake"]
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install g++-aarch64-linux-gnu "
                          "qemu-user cmake)")


def attention_block(seq=16, hidden=32, ffn=64):
    """q/k/v projections, softmax(q k^T / sqrt(d)) v, output projection + residual, layer
    norm, ReLU FFN + residual."""
    rng = np.random.default_rng(7)
    s = 1.0 / np.sqrt(hidden)
    n = helper.make_node
    nodes = [n("MatMul", ["x", "wq"], ["q"]), n("MatMul", ["x", "wk"], ["k"]),
             n("MatMul", ["x", "wv"], ["v"]), n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             n("MatMul", ["q", "kt"], ["sc"]), n("Mul", ["sc", "scale"], ["ss"]),
             n("Softmax", ["ss"], ["p"], axis=-1), n("MatMul", ["p", "v"], ["a"]),
             n("MatMul", ["a", "wo"], ["o"]), n("Add", ["o", "x"], ["res"]),
             n("LayerNormalization", ["res", "gamma", "beta"], ["ln"], axis=-1),
             n("MatMul", ["ln", "w1"], ["h"]), n("Add", ["h", "b1"], ["hb"]),
             n("Relu", ["hb"], ["hr"]), n("MatMul", ["hr", "w2"], ["f"]),
             n("Add", ["f", "ln"], ["y"])]
    inits = [(w, rng.normal(size=(hidden, hidden)) * s) for w in ("wq", "wk", "wv", "wo")]
    inits += [("scale", np.array(s)), ("gamma", 1 + 0.1 * rng.normal(size=hidden)),
              ("beta", 0.1 * rng.normal(size=hidden)),
              ("w1", rng.normal(size=(hidden, ffn)) * s), ("b1", 0.1 * rng.normal(size=ffn)),
              ("w2", rng.normal(size=(ffn, hidden)) / np.sqrt(ffn))]
    return make_model(nodes, [("x", [1, seq, hidden])], [("y", [1, seq, hidden])], inits,
                      "attention_block")


def _fp16_fmas(so) -> int:
    """fp16 vector multiply-adds (fmla vN.8h / vN.4h) in the module's code."""
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(so)],
                                 capture_output=True, text=True, check=True).stdout
    return len(re.findall(r"\tfmla\tv\d+\.[48]h,", disassembly))


@pytest.mark.parametrize("target, name", [("rpi5", "small_cnn"), ("rpi5", "attention_block"),
                                          ("graviton3", "small_cnn")])
def test_arm_fp16_uses_fp16_fma_and_matches_fp32_under_qemu(target, name, tmp_path):
    from test_qemu import require_aarch64_runtime, small_cnn

    import mcc
    from mcc.targets import resolve_target
    from mcc.verify.compare import cosine
    from mcc.verify.emulate import emulated_runner

    require_aarch64_runtime()
    model = small_cnn() if name == "small_cnn" else attention_block()
    out, = (o.name for o in model.graph.output)
    lines = []
    # verify=True: compile itself runs the aarch64 module under qemu vs ONNX Runtime and
    # requires cosine >= 0.999
    arm = mcc.compile(model, target=target, precision="fp16", progress=lines.append)
    assert arm.metadata["quantization"] == {"mode": "fp16", "accumulation": "float16"}
    verify_line = next(ln for ln in lines if ln.startswith("[mcc] verify  "))
    assert "cosine" in verify_line and verify_line.endswith("(under qemu-aarch64)"), verify_line
    so = arm.export(tmp_path / f"{name}_{target}_fp16.so")
    assert _fp16_fmas(so) >= 8, "expected fp16 fmla (v.8h) in the conv / matmul kernels"

    fp32 = mcc.compile(model, verify=False)  # this machine, fp32
    run_arm = emulated_runner(resolve_target(target), so, [out])
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    for seed in (1, 2):
        feed = {model.graph.input[0].name:
                np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
        got, want = run_arm(feed)[out], fp32.run(feed)[out]
        assert got.dtype == np.float32 and got.shape == want.shape
        print(f"{name} {target} fp16 under qemu vs fp32, seed {seed}: cosine "
              f"{cosine(got, want):.7f}, {_fp16_fmas(so)} fp16 fmla")
        assert cosine(got, want) >= 0.999
