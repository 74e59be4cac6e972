"""A small fixed-seed subset of benchmarks/fuzz.py: damaged models, modules, tuning logs
and feeds all end cleanly (ok or one-line user error; no traceback, signal, hang or file)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "mcc").exists(), reason="needs .venv/bin/mcc")
def test_fuzz_subset(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks" / "fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    cases = fuzz.build_cases(tmp_path, 20, seed=1)
    results = [fuzz.run_case(case, timeout=120) for case in cases]
    bad = [r for r in results if r["outcome"] in fuzz.BAD]
    assert not bad, [(r["family"], r["detail"], r["outcome"], r["last_line"]) for r in bad]
    assert {r["family"] for r in results} == {"onnx_bytes", "onnx_proto", "module",
                                              "tuning_log", "npz"}
