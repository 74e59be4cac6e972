"""mcc tune on a tiny conv: interruption and resumption, target keying, merge, reuse by
compile, reproducible builds, and measurement over a loopback RPC tracker.

Tuning budgets are a few trials with a tiny evolutionary population, so each run takes
seconds; one log is tuned per module and shared by the tests that only read it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import mcc
from conftest import assert_one_line_error, conv_model
from mcc.tuning import SearchOptions

FAMILY = "llvm-x86_64"
TINY = SearchOptions(trials_per_iter=4, population=16, genetic_iters=1, min_repeat_ms=1, seed=0,
                     build_workers=1, recheck_top=0)  # the recheck: test_tune_recheck.py


def record_lines(log: Path) -> list:
    path = log / FAMILY / "database_tuning_record.json"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def workload_hashes(log: Path) -> list[str]:
    path = log / FAMILY / "database_workload.json"
    return [json.loads(line)[0] for line in path.read_text().splitlines() if line.strip()]


def trace_texts(log: Path) -> list[str]:
    """(workload, trace) texts: the default-rule baselines of two kernels of the same
    shape class (two transposes) share a trace text, but not a workload."""
    return [json.dumps([rec[0], rec[1][0]], sort_keys=True) for rec in record_lines(log)]


def _wait_for_records(log: Path, count: int, proc, timeout: float) -> int:
    path = log / FAMILY / "database_tuning_record.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return len(path.read_text().splitlines())
        time.sleep(0.5)
    raise AssertionError(f"tuning subprocess wrote no {count} records (rc {proc.poll()})")


@pytest.fixture(scope="module")
def killed_log(tmp_path_factory):
    """A tuning run killed (SIGKILL) after its first measured batch: what it leaves."""
    root = tmp_path_factory.mktemp("tune")
    model = root / "conv.onnx"
    import onnx

    onnx.save(conv_model(), str(model))
    log = root / "log"
    script = textwrap.dedent(f"""
        import mcc
        from mcc.tuning import SearchOptions
        mcc.tune({str(model)!r}, trials=400, tuning_log={str(log)!r},
                 search=SearchOptions(trials_per_iter=4, population=16, genetic_iters=1,
                                      min_repeat_ms=1, seed=0, build_workers=1))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_records(log, 4, proc, timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its build/run workers
        proc.wait()
    return model, log


@pytest.fixture(scope="module")
def resumed(killed_log):
    """The same command run again after the kill, with a budget of 4 new trials."""
    model, log = killed_log
    before = len(record_lines(log))
    lines = []
    report = mcc.tune(model, trials=4, tuning_log=log, search=TINY, progress=lines.append)
    return model, log, before, report, lines


def test_kill_keeps_measured_batches(killed_log):
    _, log = killed_log
    records = record_lines(log)
    assert 4 <= len(records) < 400  # whole batches survived; the run did not finish
    assert all(len(rec[1]) >= 3 for rec in records)  # complete JSON lines only


def test_resume_continues_without_remeasuring(resumed):
    _, log, before, report, lines = resumed
    assert report.records_before == before
    assert report.trials == 4
    assert report.records_after == before + 4 == len(record_lines(log))
    texts = trace_texts(log)
    assert len(set(texts)) == len(texts), "a known candidate was measured again"
    assert any("cost model warm-started on" in ln for ln in lines)
    assert any("trials 4/4" in ln and "best" in ln for ln in lines)  # progress lines


def test_compile_applies_records_and_verifies(resumed):
    model, log, *_ = resumed
    compiled = mcc.compile(model, tuning_logs=[log])
    sched = compiled.report["schedule"]
    # every kernel the search measured takes its record, unless the default rules'
    # measured baseline beat it (mcc.tuning.baseline); the others keep the rules
    searched = {rec[0] for rec in record_lines(log)
                if "mcc_default_rule" not in json.dumps(rec[1][0]) and np.mean(rec[1][1]) < 1e9}
    assert searched
    assert sched["from_records"] + sched["rules_beat_records"] == len(searched)
    assert sched["from_records"] + sched["from_default_rules"] == sched["tasks"] == 3
    untuned = mcc.compile(model, tuning_logs=[])
    assert untuned.report["schedule"]["from_records"] == 0
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(compiled.run({"x": x})["y"], untuned.run({"x": x})["y"],
                               rtol=1e-4, atol=1e-4)


def test_compile_from_log_is_reproducible(resumed, tmp_path):
    model, log, *_ = resumed
    first = mcc.compile(model, tuning_logs=[log], verify=False).export(tmp_path / "a.so")
    second = mcc.compile(model, tuning_logs=[log], verify=False).export(tmp_path / "b.so")
    assert first.read_bytes() == second.read_bytes()


def _foreign_copy(log: Path, dest: Path, mcpu: str) -> Path:
    """``log`` with every record's target rewritten to another CPU."""
    (dest / FAMILY).mkdir(parents=True)
    src = log / FAMILY
    (dest / FAMILY / "database_workload.json").write_text(
        (src / "database_workload.json").read_text())
    out = []
    for rec in record_lines(log):
        rec[1][2]["mcpu"] = mcpu
        out.append(json.dumps(rec))
    (dest / FAMILY / "database_tuning_record.json").write_text("\n".join(out) + "\n")
    return dest


def test_foreign_target_records_are_refused(resumed, tmp_path, cli):
    model, log, *_ = resumed
    foreign = _foreign_copy(log, tmp_path / "foreign", "sapphirerapids")
    compiled = mcc.compile(model, tuning_logs=[foreign], verify=False)
    sched = compiled.report["schedule"]
    assert sched["from_records"] == 0
    # (on a machine other than the one that tuned the shipped tuning_logs/, those are
    # refused too: count only the foreign copy's key)
    refused = {k: n for k, n in sched["refused_records"].items() if "sapphirerapids" in k}
    assert list(refused.values()) == [len(record_lines(foreign))]
    result = cli("compile", model, "--tuning-log", foreign, "-o", tmp_path / "m.so",
                 "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert "0 from tuning records" in result.stderr
    assert "ignored tuning records for other targets" in result.stderr
    assert "sapphirerapids" in result.stderr


def test_merge_keeps_best_per_workload_and_target(resumed, tmp_path, cli):
    _, log, *_ = resumed
    foreign = _foreign_copy(log, tmp_path / "foreign", "sapphirerapids")
    out = tmp_path / "merged"
    result = cli("tune", "--merge", log, foreign, "-o", out)
    assert result.exit_code == 0, result.stderr
    merged = record_lines(out)
    workloads = workload_hashes(log)
    best: dict[str, float] = {}
    for rec in record_lines(log):
        if np.mean(rec[1][1]) < 1e9:
            key = workloads[rec[0]]
            best[key] = min(best.get(key, 1e100), np.mean(rec[1][1]))
    assert len(merged) == 2 * len(best) == 6  # three workloads, two targets
    host_mcpu = record_lines(log)[0][1][2]["mcpu"]
    assert {rec[1][2]["mcpu"] for rec in merged} == {host_mcpu, "sapphirerapids"}
    merged_workloads = workload_hashes(out)
    for rec in merged:
        assert np.mean(rec[1][1]) == pytest.approx(best[merged_workloads[rec[0]]])
    again = cli("tune", "--merge", log, foreign, "-o", out)
    assert_one_line_error(again, "not empty")


def test_tune_cli_errors(cli, tmp_path):
    assert_one_line_error(cli("tune"), "one MODEL")
    assert_one_line_error(cli("tune", "--merge", tmp_path, "-o", tmp_path / "x"),
                          "at least two logs")
    assert_one_line_error(cli("tune", "m.onnx", "--rpc-tracker", "127.0.0.1:9190"),
                          "go together")
    assert_one_line_error(cli("tune", "--merge", tmp_path, tmp_path, "-o", tmp_path / "x",
                              "--prune", "zero"), "--prune", "logs only")
    assert_one_line_error(cli("tune", "--merge", tmp_path / "nope", tmp_path, "-o",
                              tmp_path / "x"), "not a directory")


def test_rpc_tracker_loopback(tmp_path, save_onnx):
    """Build here, measure on an RPC server registered with a tracker, all on 127.0.0.1."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    server = None
    try:
        server = rpc.Server(host="127.0.0.1", port=9300, port_end=9400, key="mcc-test",
                            tracker_addr=("127.0.0.1", tracker.port), silent=True)
        log = tmp_path / "log"
        report = mcc.tune(save_onnx(conv_model()), trials=4, tuning_log=log, search=TINY,
                          rpc_tracker=f"127.0.0.1:{tracker.port}", rpc_key="mcc-test")
    finally:
        if server is not None:
            server.terminate()
        tracker.terminate()
    assert report.trials >= 4  # a batch may end short on a tiny task's search space
    measured = [np.mean(rec[1][1]) for rec in record_lines(log)]
    # the 3 default-rule baselines (mcc.tuning.baseline) and the trials, measured remotely
    assert len(measured) == 3 + report.trials and min(measured) < 1e9


def test_tune_refuses_a_target_it_cannot_measure(cli, tmp_path, save_onnx):
    result = cli("tune", save_onnx(conv_model()), "--target",
                 '{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}', "--tuning-log", tmp_path)
    assert_one_line_error(result, "cannot run on this machine", "--rpc-tracker")
