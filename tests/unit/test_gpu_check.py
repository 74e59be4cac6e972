"""benchmarks/gpu_check.py's comparison of a GPU run with the references (no build)."""

from __future__ import annotations

import json

import gpu_check
import numpy as np
import pytest


def _bundle(tmp_path, value, int8=False):
    ref = np.array([[1.0, np.nan, -np.inf, 2.0]], np.float32)
    refs = {"m/y/x86": ref} if int8 else {"m/y/reference": ref, "m/y/x86": ref}
    np.savez(tmp_path / "refs.npz", **refs)
    plan = [{"case": "m", "module": "modules/m.so", "inputs": [], "outputs": ["y"],
             "reference": {} if int8 else {"y": "ONNX Runtime"}, "int8": int8,
             "fp16": False}]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    results = tmp_path / "run"
    results.mkdir(exist_ok=True)
    np.savez(results / "outputs.npz", **{"m/y": np.asarray(value, np.float32)})
    runs = {"m": {"rc": 0, "median_ms": 0.5, "min_ms": 0.4},
            "vec_nan": {"rc": 0, "text": "vec_nan: ... 0 wrong"}}
    (results / "timings.json").write_text(json.dumps({"runs": runs, "memcheck": {}}))
    return results


@pytest.mark.parametrize("value, ok", [
    ([[1.00005, np.nan, -np.inf, 2.0]], True),
    ([[1.01, np.nan, -np.inf, 2.0]], False),       # beyond rtol 1e-3 / atol 1e-4
    ([[1.0, 0.0, -np.inf, 2.0]], False),           # a NaN lost
    ([[1.0, np.nan, np.inf, 2.0]], False),         # -inf became +inf
    ([[1.0, np.nan, -np.inf]], False),             # wrong shape
])
def test_fp32_outputs_checked_with_nan_and_inf_in_place(tmp_path, value, ok, capsys):
    results = _bundle(tmp_path, value)
    assert gpu_check.compare(results, tmp_path) == (0 if ok else 1)
    assert ("| m | ok" in capsys.readouterr().out) == ok


def test_int8_within_two_percent_of_the_x86_int8_build(tmp_path):
    assert gpu_check.compare(_bundle(tmp_path, [[1.03, np.nan, -np.inf, 2.0]], True),
                             tmp_path) == 0
    assert gpu_check.compare(_bundle(tmp_path, [[1.05, np.nan, -np.inf, 2.0]], True),
                             tmp_path) == 1


def test_a_failed_run_or_memcheck_error_fails(tmp_path, capsys):
    results = _bundle(tmp_path, [[1.0, np.nan, -np.inf, 2.0]])
    report = json.loads((results / "timings.json").read_text())
    report["memcheck"] = {"m": {"rc": 3, "text": "Invalid __global__ read"}}
    (results / "timings.json").write_text(json.dumps(report))
    assert gpu_check.compare(results, tmp_path) == 1
    report["memcheck"] = {}
    report["runs"]["m"] = {"rc": 1, "text": "error: cannot load 'modules/m.so'"}
    (results / "timings.json").write_text(json.dumps(report))
    assert gpu_check.compare(results, tmp_path) == 1
    assert "FAILED: error: cannot load" in capsys.readouterr().out


def test_run_sh_is_complete():
    assert "@" not in gpu_check.RUN_SH.replace("$@", "")
    assert f'"--repeat", "{gpu_check.REPEAT}"' in gpu_check.RUN_SH
