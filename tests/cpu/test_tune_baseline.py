"""mcc tune measures the default rules' schedule of every task first (a tagged baseline
record), and mcc compile applies a tuned record only where it is at least as fast.
Tasks carry the weight mark (layout-free constants) a compile gives kernels; records
tuned before they did still apply, but never in place of a newer record of the kernel.

One tiny tuning run (4 trials) per module; the slow / fast cases are copies of its log
with the tuned records' run_secs rewritten, so the preference is decided deterministically.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

import mcc
from conftest import tune_conv
from mcc.schedule.records import BASELINE_TAG, is_baseline_trace_json
from mcc.tuning import SearchOptions

FAMILY = "llvm-x86_64"
TINY = SearchOptions(trials_per_iter=4, population=16, genetic_iters=1, min_repeat_ms=1, seed=0,
                     build_workers=1, recheck_top=0)  # the recheck: test_tune_recheck.py


def _lines(log: Path) -> list:
    path = log / FAMILY / "database_tuning_record.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _secs(line) -> float:
    return float(np.mean(line[1][1]))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    return tune_conv(tmp_path_factory.mktemp("tune_baseline"), TINY, trials=4)


@pytest.fixture(scope="module")
def legacy(tuned, tmp_path_factory):
    """A log of the same model tuned as mcc did before tasks carried the weight mark."""
    from tvm.s_tir import meta_schedule as ms

    import mcc.tuning

    def unmarked_tasks(mod, target):
        return [t for t in ms.relax_integration.extract_tasks(mod, target)
                if not t.mod.attrs or not t.mod.attrs.get("tirx.is_scheduled")]

    log = tmp_path_factory.mktemp("legacy") / "log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mcc.tuning, "_extract_tasks", unmarked_tasks)
        mcc.tune(tuned[0], trials=4, tuning_log=log, search=TINY)
    return log


def _marked_workloads(log: Path) -> int:
    """Workload lines whose kernel has the weight mark (an attribute name in the
    base64-serialised module)."""
    path = log / FAMILY / "database_workload.json"
    return sum(b"layout_free_buffers" in base64.b64decode(json.loads(line)[1])
               for line in path.read_text().splitlines() if line.strip())


def _rewritten(log: Path, dest: Path, factor: float) -> tuple[Path, set]:
    """A copy of ``log`` whose tuned (non-baseline) records take ``factor`` x the baseline
    time of their workload; returns it and the workloads that have tuned records."""
    lines = _lines(log)
    base = {ln[0]: _secs(ln) for ln in lines if is_baseline_trace_json(ln[1][0])}
    tuned_workloads = set()
    out = []
    for ln in lines:
        if not is_baseline_trace_json(ln[1][0]) and _secs(ln) < 1e9 and ln[0] in base:
            ln[1][1] = [base[ln[0]] * factor]
            tuned_workloads.add(ln[0])
        out.append(json.dumps(ln))
    (dest / FAMILY).mkdir(parents=True)
    (dest / FAMILY / "database_workload.json").write_text(
        (log / FAMILY / "database_workload.json").read_text())
    (dest / FAMILY / "database_tuning_record.json").write_text("\n".join(out) + "\n")
    return dest, tuned_workloads


def test_log_holds_one_measured_baseline_per_task(tuned):
    _, log, report, said = tuned
    lines = _lines(log)
    baselines = [ln for ln in lines if is_baseline_trace_json(ln[1][0])]
    assert len(baselines) == report.tasks == len({ln[0] for ln in baselines})
    assert all(0 < _secs(ln) < 1e9 for ln in baselines), "a baseline failed to run"
    assert BASELINE_TAG in json.dumps(baselines[0][1][0])
    assert report.trials >= 4  # search trials only: the baselines are counted apart
    assert len(lines) == report.tasks + report.trials == report.records_after
    assert sum("default rules" in s and "baseline" in s for s in said) == report.tasks


def test_resume_does_not_measure_baselines_again(tuned):
    from mcc.build.pipeline import optimize
    from mcc.frontends import import_model
    from mcc.schedule.records import materialize, records_for_target
    from mcc.targets import resolve_target
    from mcc.tuning import _extract_tasks
    from mcc.tuning.baseline import measure_baselines

    model, log, *_ = tuned
    target = resolve_target(None).tvm_target()
    mod, _ = optimize(import_model(model, {}, None).mod, target)
    tasks = _extract_tasks(mod, target)
    known = materialize(records_for_target([log / FAMILY], target).records)
    # builder, runner and log are None: touching any of them would raise
    assert measure_baselines(tasks, mod, target, None, None, known, None) == []


def test_compile_prefers_rules_over_slower_records(tuned, tmp_path):
    model, log, *_ = tuned
    slow, workloads = _rewritten(log, tmp_path / "slow", 3.0)
    assert workloads, "the tiny search measured no valid candidate"
    compiled = mcc.compile(model, tuning_logs=[slow])  # verified against ONNX Runtime
    sched = compiled.report["schedule"]
    assert sched["from_records"] == 0
    assert sched["rules_beat_records"] == len(workloads)
    assert sched["from_default_rules"] == sched["tasks"]
    assert compiled.report["verify"]["ok"]
    untuned = mcc.compile(model, tuning_logs=[], verify=False)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], untuned.run({"x": x})["y"],
                               rtol=1e-5, atol=1e-5)


def test_compile_applies_records_faster_than_rules(tuned, tmp_path, cli):
    model, log, *_ = tuned
    fast, workloads = _rewritten(log, tmp_path / "fast", 0.5)
    compiled = mcc.compile(model, tuning_logs=[fast])
    sched = compiled.report["schedule"]
    assert sched["from_records"] == len(workloads) > 0
    assert sched["rules_beat_records"] == 0
    assert compiled.report["verify"]["ok"]
    slow, _ = _rewritten(log, tmp_path / "slow", 3.0)
    result = cli("compile", model, "--tuning-log", slow, "-o", tmp_path / "m.so", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert f"({len(workloads)} where the default rules beat the tuned records)" in result.stderr


def test_tasks_carry_the_weight_mark_so_records_may_repack_weights(tuned):
    from mcc.build.pipeline import optimize
    from mcc.frontends import import_model
    from mcc.targets import resolve_target
    from mcc.tuning import _extract_tasks

    model, log, report, _ = tuned
    target = resolve_target(None).tvm_target()
    mod, _ = optimize(import_model(model, {}, None).mod, target)
    marks = [t.dispatched[0]["main"].attrs.get("layout_free_buffers")
             for t in _extract_tasks(mod, target)]
    assert any(m is not None and len(m) for m in marks)  # the conv's constant weight
    assert _marked_workloads(log) == report.tasks


def test_records_tuned_without_the_weight_mark_still_apply(tuned, legacy, tmp_path):
    model = tuned[0]
    assert _marked_workloads(legacy) == 0
    fast, workloads = _rewritten(legacy, tmp_path / "fast", 0.5)
    compiled = mcc.compile(model, tuning_logs=[fast])
    assert compiled.report["schedule"]["from_records"] == len(workloads) > 0
    assert compiled.report["verify"]["ok"]


def test_an_older_record_never_stands_in_for_a_newer_one(tuned, legacy, tmp_path):
    """The rules beat the kernel's new records: its fast old records stay unused too."""
    model, log, *_ = tuned
    slow_new, new_workloads = _rewritten(log, tmp_path / "new", 3.0)
    fast_old, old_workloads = _rewritten(legacy, tmp_path / "old", 0.5)
    assert new_workloads and old_workloads
    sched = mcc.compile(model, tuning_logs=[slow_new, fast_old]).report["schedule"]
    assert sched["from_records"] == 0
    assert sched["from_default_rules"] == sched["tasks"]
