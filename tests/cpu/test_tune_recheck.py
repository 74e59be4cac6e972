"""mcc tune's recheck: each tuned task's best records and its default-rule baseline are
timed again at the end and logged as tagged records, and compile and merge then go by
those alone. One tiny tuning run; the preference cases are copies of its log with the
timings rewritten, so they are decided deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_tune_baseline import _lines

import mcc
from conftest import tune_conv
from mcc.schedule.records import (
    RECHECK_TAG,
    is_baseline_trace_json,
    is_rechecked_trace_json,
    rechecked_only,
)
from mcc.tuning import SearchOptions

FAMILY = "llvm-x86_64"
TINY = SearchOptions(trials_per_iter=4, population=16, genetic_iters=1, min_repeat_ms=1, seed=0,
                     build_workers=1, recheck_top=2, recheck_rounds=2)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    return tune_conv(tmp_path_factory.mktemp("tune_recheck"), TINY, trials=8)


def _copy(log: Path, dest: Path, rewrite) -> Path:
    """A copy of ``log`` with each record line passed through ``rewrite``."""
    (dest / FAMILY).mkdir(parents=True)
    (dest / FAMILY / "database_workload.json").write_text(
        (log / FAMILY / "database_workload.json").read_text())
    lines = [json.dumps(rewrite(line)) for line in _lines(log)]
    (dest / FAMILY / "database_tuning_record.json").write_text("\n".join(lines) + "\n")
    return dest


def test_each_searched_task_is_timed_again_with_its_baseline(tuned):
    _, log, report, said = tuned
    lines = _lines(log)
    rechecked = [ln for ln in lines if is_rechecked_trace_json(ln[1][0])]
    searched = {ln[0] for ln in lines if not is_baseline_trace_json(ln[1][0])
                and not is_rechecked_trace_json(ln[1][0])}
    assert report.rechecked == len(rechecked) > 0
    assert report.records_after == len(lines)
    for workload in {ln[0] for ln in rechecked}:
        mine = [ln for ln in rechecked if ln[0] == workload]
        assert sum(is_baseline_trace_json(ln[1][0]) for ln in mine) == 1  # the rules, again
        assert 2 <= len(mine) <= 1 + TINY.recheck_top
        assert all(len(ln[1][1]) == 1 and 0 < ln[1][1][0] < 1 for ln in mine)  # one median
    assert {ln[0] for ln in rechecked} <= searched
    assert any(s.startswith("[mcc] recheck ") and "default rules" in s for s in said)


def test_compile_goes_by_the_rechecked_timings(tuned, tmp_path):
    """The search's own timings say a record beats the rules by far; the recheck says
    the rules win: the rules schedule those kernels."""
    model, log, *_ = tuned
    lines = _lines(log)
    rechecked = {ln[0] for ln in lines if is_rechecked_trace_json(ln[1][0])}
    searched = {ln[0] for ln in lines if not is_baseline_trace_json(ln[1][0])}

    def rules_win_recheck(line):
        trace = line[1][0]
        if is_rechecked_trace_json(trace):
            line[1][1] = [1e-6 if is_baseline_trace_json(trace) else 1e-3]
        elif not is_baseline_trace_json(trace):
            line[1][1] = [1e-9]  # a lucky single timing
        return line

    copy = _copy(log, tmp_path / "rules", rules_win_recheck)
    compiled = mcc.compile(model, tuning_logs=[copy])
    sched = compiled.report["schedule"]
    assert sched["rules_beat_records"] == len(rechecked)
    assert sched["from_records"] == len(searched - rechecked)  # not rechecked: as before
    assert compiled.report["verify"]["ok"]

    def record_wins_recheck(line):
        trace = line[1][0]
        if is_rechecked_trace_json(trace):
            line[1][1] = [1e-3 if is_baseline_trace_json(trace) else 1e-6]
        return line

    copy = _copy(log, tmp_path / "record", record_wins_recheck)
    compiled = mcc.compile(model, tuning_logs=[copy])
    assert compiled.report["schedule"]["from_records"] >= len(rechecked)
    assert compiled.report["verify"]["ok"]
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    untuned = mcc.compile(model, tuning_logs=[], verify=False)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], untuned.run({"x": x})["y"],
                               rtol=1e-4, atol=1e-4)


def test_merge_keeps_the_rechecked_record(tuned, tmp_path):
    _, log, *_ = tuned
    rechecked = {ln[0] for ln in _lines(log) if is_rechecked_trace_json(ln[1][0])}
    merged = tmp_path / "merged"
    mcc.merge_tuning_logs([log], merged)
    kept = _lines(merged)
    # one record per workload; for a rechecked workload, one of its rechecked records
    assert sum(is_rechecked_trace_json(ln[1][0]) for ln in kept) == len(rechecked)


class Raw:
    def __init__(self, workload, tag, key="k"):
        self.workload_id, self.key = workload, key
        self.record = [[["Annotate", tag]], [1e-6], {}, []]


def test_rechecked_only_drops_the_search_timings_of_rechecked_workloads():
    raws = [Raw("a", "x"), Raw("a", RECHECK_TAG), Raw("b", "x"), Raw("a", "x", key="other")]
    kept = rechecked_only(raws)
    assert kept == [raws[1], raws[2], raws[3]]


def _scaled(factor: float):
    """A schedule of y = x * factor (64 floats), split and vectorised."""
    import tvm
    from tvm import s_tir, te

    x = te.placeholder((64,), name="x")
    y = te.compute((64,), lambda i: x[i] * factor, name="y")
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([x, y])}))
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(sch.split(loop, [None, 16])[1])
    return sch


def test_disagreeing_tells_the_wrong_schedules():
    from mcc.targets import resolve_target
    from mcc.tuning.outputs import disagreeing

    target = resolve_target(None).tvm_target()
    candidates = [_scaled(2.0), _scaled(2.01), _scaled(2.001), _scaled(3.0)]
    assert disagreeing(candidates, _scaled(2.0), target) == [1, 3]  # 0.05% is rounding-sized


def test_records_with_wrong_outputs_are_refused(tmp_path, monkeypatch):
    """Every searched record "computes wrong outputs": the recheck logs them as failed, the
    report says so, and compile schedules every tuned kernel by the rules."""
    import mcc.tuning.outputs

    def all_disagree(candidates, reference, target, seed=0):
        return list(range(len(candidates)))

    monkeypatch.setattr(mcc.tuning.outputs, "disagreeing", all_disagree)
    model, log, report, said = tune_conv(tmp_path, TINY, trials=8)
    refused = [s for s in said if "with wrong outputs refused" in s]
    assert refused and all("none correct" in s for s in refused)
    lines = _lines(log)
    failed = [ln for ln in lines if is_rechecked_trace_json(ln[1][0])
              and not is_baseline_trace_json(ln[1][0])]
    assert failed and all(ln[1][1][0] >= 1e9 for ln in failed)
    compiled = mcc.compile(model, tuning_logs=[log])
    sched = compiled.report["schedule"]
    assert sched["from_records"] == 0 and sched["from_default_rules"] == sched["tasks"]
    assert len({ln[0] for ln in failed}) == sched["tasks"]  # every kernel was tuned
    assert compiled.report["verify"]["ok"]
