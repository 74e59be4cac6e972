"""End to end through the `mcc` command: compile, info, run, bench, targets."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from conftest import TINY_MODELS
from mcc.runtime.tensors import random_inputs

STAGES = ("import", "passes", "schedule", "build", "export", "verify")


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_compile_info_run_matches_onnxruntime(name, save_onnx, cli, tmp_path):
    model_path = save_onnx(TINY_MODELS[name](), f"{name}.onnx")
    out = tmp_path / f"{name}.so"

    result = cli("compile", model_path, "-o", out)
    assert result.exit_code == 0, result.output
    for stage in STAGES:  # progress: every stage with its time
        assert f"[mcc] {stage:<8} " in result.stderr
    assert "vs onnxruntime: max abs err" in result.stderr and " ok" in result.stderr
    assert out.exists() and [p.name for p in tmp_path.glob("*.tmp")] == []

    meta = json.loads(cli("info", out, "--json").stdout)
    session = ort.InferenceSession(str(model_path))
    assert [t["name"] for t in meta["inputs"]] == [i.name for i in session.get_inputs()]
    assert [t["name"] for t in meta["outputs"]] == [o.name for o in session.get_outputs()]
    assert meta["target"]["name"] == "x86" and meta["tvm_version"].startswith("0.27")
    assert "mcc.FoldBatchNorm" in meta["passes"] and "FuseOps" in meta["passes"]

    from mcc.runtime.tensors import TensorSpec

    feed = random_inputs([TensorSpec.from_json(t) for t in meta["inputs"]], seed=7,
                         symbolic_size=2)
    np.savez(tmp_path / "in.npz", **feed)
    result = cli("run", out, "--inputs", tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "out.npz") as got:
        expected = session.run(None, feed)
        for spec, want in zip(meta["outputs"], expected):
            np.testing.assert_allclose(got[spec["name"]], want, rtol=1e-4, atol=1e-5)


def test_default_output_is_model_stem_in_cwd(save_onnx, cli, tmp_path, monkeypatch):
    model_path = save_onnx(TINY_MODELS["residual"](), "resblock.onnx")
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    result = cli("compile", model_path)
    assert result.exit_code == 0, result.output
    assert (workdir / "resblock.so").exists()
    assert "wrote" in result.stdout


def test_run_without_inputs_says_it_uses_random_data(save_onnx, cli, tmp_path):
    out = tmp_path / "m.so"
    assert cli("compile", save_onnx(TINY_MODELS["conv"]()), "-o", out).exit_code == 0
    result = cli("run", out)
    assert result.exit_code == 0
    assert "seeded random inputs" in result.stderr
    assert result.stdout.startswith("y: float32[1, 8, 8, 8]")


def test_info_human_readable(save_onnx, cli, tmp_path):
    out = tmp_path / "m.so"
    cli("compile", save_onnx(TINY_MODELS["matmul_softmax"]()), "-o", out)
    text = cli("info", out).stdout
    assert "input     x: float32[batch,16]" in text
    assert "output    probs: float32[batch,5]" in text
    assert "versions: mcc 0.1.0, TVM 0.27.0" in text


def test_module_runs_from_a_new_process(save_onnx, cli, tmp_path):
    """The .so is self-contained: a fresh interpreter loads it through mcc run and mcc.load."""
    model_path = save_onnx(TINY_MODELS["conv_bn"]())
    out = tmp_path / "m.so"
    assert cli("compile", model_path, "-o", out).exit_code == 0
    run = subprocess.run([sys.executable, "-m", "mcc.cli", "run", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("y: float32[1, 8, 12, 12]")
    script = (
        "import sys, numpy as np, onnxruntime as ort, mcc\n"
        "m = mcc.load(sys.argv[1])\n"
        "x = np.random.default_rng(1).standard_normal((1, 3, 12, 12)).astype('float32')\n"
        "got = m.run({'x': x})['y']\n"
        "want = ort.InferenceSession(sys.argv[2]).run(None, {'x': x})[0]\n"
        "np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)\n"
        "print('match', [t.name for t in m.inputs], [t.name for t in m.outputs])\n")
    check = subprocess.run([sys.executable, "-c", script, str(out), str(model_path)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "match ['x'] ['y']"


def test_targets_lists_presets(cli):
    result = cli("targets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()[:-1]]
    assert names == ["x86", "x86-avx2", "x86-avx512", "aarch64", "rpi4", "rpi5", "graviton3",
                     "jetson-orin", "cuda", "cuda-sm75", "cuda-sm80", "cuda-sm86", "cuda-sm89",
                     "cuda-sm90"]


def test_compile_for_a_preset_and_a_raw_target(save_onnx, cli, tmp_path):
    model_path = save_onnx(TINY_MODELS["matmul_softmax"]())
    for target, mcpu in [("x86-avx2", "haswell"),
                         ('{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake"}',
                          "skylake")]:
        out = tmp_path / f"{mcpu}.so"
        result = cli("compile", model_path, "--target", target, "-o", out)
        assert result.exit_code == 0, result.output
        meta = json.loads(cli("info", out, "--json").stdout)
        assert meta["target"]["tvm"]["mcpu"] == mcpu


def test_bench_reports_both_runtimes_and_ratio(save_onnx, cli, tmp_path):
    model_path = save_onnx(TINY_MODELS["conv_bn"]())
    result = cli("bench", model_path, "--repeat", "5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mcc"]["runs"] == 5 and report["mcc"]["median_ms"] > 0
    assert report["reference"]["name"] == "onnxruntime"
    assert report["mcc"]["p90_ms"] >= report["mcc"]["median_ms"]
    assert report["ratio"] == pytest.approx(report["mcc"]["median_ms"]
                                            / report["reference"]["median_ms"])

    out = tmp_path / "m.so"
    cli("compile", model_path, "-o", out)
    result = cli("bench", out, "--repeat", "3")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "onnxruntime" in text and "mcc / onnxruntime:" in text


def test_profile_lists_every_kernel_with_its_schedule(save_onnx, cli, tmp_path):
    """`mcc profile`: each kernel of the module timed, with where its schedule came from
    and its FLOP rate; the JSON table accounts for every kernel the metadata lists."""
    out = tmp_path / "m.so"
    assert cli("compile", save_onnx(TINY_MODELS["conv_bn"]()), "-o", out).exit_code == 0
    result = cli("profile", out, "--rounds", "3")
    assert result.exit_code == 0, result.output
    assert "end to end" in result.stdout and "rule TiledReduction" in result.stdout

    table = json.loads(cli("profile", out, "--rounds", "3", "--json").stdout)
    meta = json.loads(cli("info", out, "--json").stdout)
    timed = {k["name"]: k for k in table["kernels"]}
    conv = next(name for name in meta["schedule"]["kernels"] if "conv2d" in name)
    assert timed[conv]["calls"] == 1 and timed[conv]["ms"] >= 0
    assert timed[conv]["flops"] == meta["schedule"]["kernels"][conv]["flops"] > 0
    assert set(meta["schedule"]["kernels"]) >= {n for n in timed if not n.startswith("vm.")}
