"""mcc.schedule.records.prefer_rules on hand-made log lines (no TVM objects, no build)."""

from __future__ import annotations

from mcc.schedule.records import BASELINE_TAG, FAILED_SECS, RawRecord, prefer_rules

TARGET = {"kind": "llvm", "mcpu": "znver4", "mtriple": "x86_64-linux-gnu"}
BASE_TRACE = [[["GetSBlock", [], ["root", "main"], ["b0"]],
               ["Annotate", ["b0", 1], [BASELINE_TAG], []]], []]


def raw(workload: str, secs: float, baseline: bool = False, n: int = 0) -> RawRecord:
    trace = BASE_TRACE if baseline else [[["Split", [], [n], []]], []]
    return RawRecord([workload, "mod"], [trace, [secs], TARGET, []], "log")


def test_slower_records_give_way_to_the_rules():
    raws = [raw("a", 2e-6, baseline=True), raw("a", 3e-6, n=1), raw("a", 5e-6, n=2),
            raw("b", 4e-6, baseline=True), raw("b", 1e-6, n=3), raw("b", 9e-6, n=4)]
    kept, beaten = prefer_rules(raws)
    assert beaten == 1  # workload a: every tuned record is slower than its rules
    assert [(r.workload_id, r.secs) for r in kept] == [("b", 1e-6)]


def test_ties_keep_the_record_and_baselines_are_never_applied():
    kept, beaten = prefer_rules([raw("a", 2e-6, baseline=True), raw("a", 2e-6, n=1)])
    assert beaten == 0 and [r.secs for r in kept] == [2e-6]
    assert all(BASELINE_TAG not in str(r.record[0]) for r in kept)


def test_without_a_baseline_records_apply_and_failed_baselines_do_not_count():
    kept, beaten = prefer_rules([raw("a", 7e-6, n=1),
                                 raw("b", FAILED_SECS * 10, baseline=True), raw("b", 1.0, n=2)])
    assert beaten == 0 and len(kept) == 2
