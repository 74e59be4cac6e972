"""ARM int8 with the dot-product instructions: `mcc compile --target rpi5 --quantize int8`
must emit `sdot` (ARMv8.2 +dotprod) and, run under qemu-aarch64, agree with the x86 int8
build of the same model and calibration."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

TOOLS = ["aarch64-linux-gnu-g++", "aarch64-linux-gnu-objdump", "qemu-aarch64", "cmake"]
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install g++-aarch64-linux-gnu "
                          "qemu-user cmake)")


def test_rpi5_int8_uses_sdot_and_matches_the_x86_int8_build(tmp_path):
    from test_qemu import require_aarch64_runtime, small_cnn

    import mcc
    from mcc.targets import resolve_target
    from mcc.verify.emulate import emulated_runner

    require_aarch64_runtime()
    model = small_cnn()
    rng = np.random.default_rng(5)
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, image=rng.standard_normal((8, 1, 3, 32, 32)).astype(np.float32))
    arm = mcc.compile(model, target="rpi5", quantize="int8", calibration=calibration)
    quant = arm.metadata["quantization"]
    assert quant["int8_ops"] == ["conv2d_0", "conv2d_1", "matmul_0"]
    assert quant["activations"].startswith("int8")  # s8 x s8: what sdot multiplies
    so = arm.export(tmp_path / "cnn_rpi5_int8.so")
    disassembly = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(so)],
                                 capture_output=True, text=True, check=True).stdout
    sdot = sum(1 for line in disassembly.splitlines() if "\tsdot\t" in line)
    assert sdot >= 3, "expected sdot in the int8 kernels"

    x86 = mcc.compile(model, quantize="int8", calibration=calibration)
    assert x86.metadata["quantization"]["activations"].startswith("uint8")
    run_arm = emulated_runner(resolve_target("rpi5"), so, ["logits"])
    for seed in (0, 1):
        feed = {"image": np.random.default_rng(seed).standard_normal((1, 3, 32, 32))
                .astype(np.float32)}
        got, want = run_arm(feed)["logits"], x86.run(feed)["logits"]
        # the same integer arithmetic (an int8 grid is the uint8 grid shifted by 128); only
        # the fp32 epilogue may round differently, moving a value by an output quantum
        np.testing.assert_allclose(got, want, rtol=0, atol=0.02 * np.abs(want).max())
