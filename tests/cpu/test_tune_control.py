"""mcc tune under the user's control: Ctrl-C stops it cleanly and a re-run continues,
a time budget covers the whole run, and the compile options that change the kernels
(here --prune zero) are tuned as compile builds them.

Budgets are a few trials of a tiny search on tiny models (seconds each).
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
import onnx
import pytest
from onnx import helper
from test_tune_baseline import _lines, _rewritten

import mcc
from conftest import conv_model, make_model
from mcc.tuning import SearchOptions

FAMILY = "llvm-x86_64"
TINY = dict(trials_per_iter=4, population=16, genetic_iters=1, min_repeat_ms=1, seed=0,
            build_workers=1)
# `mcc tune` as a user runs it, with the search shrunk to TINY
CLI = textwrap.dedent(f"""
    import functools, sys
    import mcc.tuning
    mcc.tuning.SearchOptions = functools.partial(mcc.tuning.SearchOptions, **{TINY!r})
    from mcc.cli import main
    sys.argv[0] = "mcc"
    main()
""")
STOP_WAIT = 120  # seconds a Ctrl-C'd run may take to exit before the test calls it hung


def _trace_texts(log: Path) -> list[str]:
    return [json.dumps([rec[0], rec[1][0]], sort_keys=True) for rec in _lines(log)]


def _group_alive(pgid: int, grace: float = 3.0) -> list[int]:
    """Processes of group ``pgid`` still running after ``grace`` seconds (zombies, which
    only wait for a parent to reap them, do not count)."""
    deadline = time.monotonic() + grace
    while True:
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True,
                             text=True).stdout
        alive = [int(p) for p, g, stat in (ln.split() for ln in out.splitlines())
                 if int(g) == pgid and not stat.startswith("Z")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """`mcc tune` with a 400-trial budget, Ctrl-C'd (SIGINT to its process group, as a
    terminal does) once its first search batch is in the log."""
    root = tmp_path_factory.mktemp("tune_ctrl_c")
    model, log = root / "conv.onnx", root / "log"
    onnx.save(conv_model(), str(model))
    proc = subprocess.Popen([sys.executable, "-c", CLI, "tune", str(model), "--trials", "400",
                             "--tuning-log", str(log)], cwd=root, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = log / FAMILY / "database_tuning_record.json"
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            # 3 default-rule baselines, then at least one batch of the search
            if path.exists() and len(path.read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"tuning ended before Ctrl-C: {proc.stderr.read()}"
        before = len(path.read_text().splitlines())
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.5)
    return model, log, proc.returncode, proc.stderr.read(), took, before, proc.pid


def test_ctrl_c_stops_with_one_line_and_exit_130(interrupted):
    *_, rc, stderr, took, _, pgid = interrupted
    assert rc == 130, stderr[-2000:]
    assert took < STOP_WAIT, "the run went on after Ctrl-C"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("interrupted: ") and "new records saved in" in lines[-1]
    assert "run the same command again" in lines[-1]
    assert "Traceback" not in stderr and "error" not in lines[-1]
    assert not _group_alive(pgid), "build / run workers outlived the interrupted run"


def test_ctrl_c_keeps_valid_records_and_no_partial_files(interrupted):
    from mcc.schedule.records import materialize, records_for_target
    from mcc.targets import resolve_target

    _, log, _, stderr, _, before, _ = interrupted
    files = sorted(p.name for p in (log / FAMILY).iterdir())
    assert files == ["database_tuning_record.json", "database_workload.json"]
    for name in files:
        text = (log / FAMILY / name).read_text()
        assert text.endswith("\n")
        for line in text.splitlines():
            json.loads(line)  # every line complete
    records = _lines(log)
    assert len(records) >= before
    saved = int(stderr.strip().splitlines()[-1].split("interrupted: ")[1].split()[0])
    assert saved == len(records)  # the message counts what the log holds
    # failures from workers the interrupt killed are not logged as failed candidates
    assert all(np.mean(rec[1][1]) < 1e9 for rec in records)
    target = resolve_target(None).tvm_target()
    assert len(materialize(records_for_target([log / FAMILY], target).records)) == len(records)


def test_rerun_after_ctrl_c_continues(interrupted):
    model, log, *_ = interrupted
    before = len(_lines(log))
    said = []
    report = mcc.tune(model, trials=4, tuning_log=log, search=SearchOptions(**TINY),
                      progress=said.append)
    assert report.records_before == before
    assert (report.records_after == before + report.trials + report.rechecked
            == len(_lines(log)))
    assert report.trials >= 1
    texts = _trace_texts(log)
    assert len(set(texts)) == len(texts), "a candidate was measured twice"
    assert not any("baseline" in s and "default rules" in s for s in said)  # all kept
    assert any("cost model warm-started on" in s for s in said)


class VirtualClock:
    """Stands in for ``Stop.clock``: time passes only as the tuner measures (``per_run``
    seconds a measured candidate) or when the test says, so a time budget ends the run at
    the same point on a fast machine and on a busy one."""

    def __init__(self, monkeypatch, per_run: float):
        from mcc.tuning.search import Stop, StoppableRunner

        self.now, self.per_run = 0.0, per_run
        monkeypatch.setattr(Stop, "clock", staticmethod(lambda: self.now))
        runner_cls = StoppableRunner._cls  # the Python class behind TVM's derived object
        run = runner_cls.run

        def timed_run(runner, inputs):
            measured = 0 if runner.stop.now() else len(inputs)
            out = run(runner, inputs)
            self.now += self.per_run * measured
            return out

        monkeypatch.setattr(runner_cls, "run", timed_run)


def test_time_budget_covers_everything(save_onnx, tmp_path, monkeypatch):
    """A budget spent before the baselines start: nothing is measured."""
    clock = VirtualClock(monkeypatch, per_run=1.0)
    said = []

    def progress(line):  # import and lowering "take" a minute of the half-minute budget
        said.append(line)
        if "import" in line:
            clock.now += 60

    report = mcc.tune(save_onnx(conv_model()), time_budget=0.5, tuning_log=tmp_path,
                      search=SearchOptions(**TINY), progress=progress)
    assert report.trials == 0 and report.records_after == 0
    assert any("3 of 3 left for a later run (time budget spent)" in s for s in said)


def test_time_budget_is_kept_within_one_batch(save_onnx, tmp_path, monkeypatch):
    """On a virtual clock of 5 s per measured candidate, a one-minute budget holds the
    3 baselines and a few search batches, and ends the run within one batch of it."""
    per_run, budget_s = 5.0, 60
    VirtualClock(monkeypatch, per_run)
    said = []
    report = mcc.tune(save_onnx(conv_model()), time_budget=budget_s / 60, tuning_log=tmp_path,
                      search=SearchOptions(**TINY), progress=said.append)
    assert report.trials > 0
    assert report.seconds <= budget_s + per_run * TINY["trials_per_iter"], report.seconds
    assert report.records_after == len(_lines(tmp_path)) >= 3 + report.trials  # + baselines
    assert any("time budget spent" in s for s in said)


def zero_filter_model():
    """Conv (8 filters, 3 all zero) -> Relu -> Conv: --prune zero removes 3 channels."""
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((8, 3, 3, 3))
    w1[[1, 4, 6]] = 0.0
    return make_model(
        [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])],
        [("x", [1, 3, 12, 12])], [("y", [1, 4, 12, 12])],
        [("w1", w1), ("w2", rng.standard_normal((4, 8, 3, 3)) * 0.3)], "zero_filters")


def test_tune_with_compile_options_feeds_a_matching_compile(save_onnx, tmp_path, cli,
                                                            monkeypatch):
    import mcc.tuning

    monkeypatch.setattr(mcc.tuning, "SearchOptions",
                        lambda **kw: SearchOptions(**{**TINY, **kw}))
    model = save_onnx(zero_filter_model())
    log = tmp_path / "log"
    result = cli("tune", model, "--prune", "zero", "--trials", "8", "--tuning-log", log)
    assert result.exit_code == 0, result.stderr
    assert "zero filters: 3 channels removed" in result.stderr  # tuned the pruned model
    fast = tmp_path / "fast"
    _, tuned = _rewritten(log, fast, 0.5)  # tuned records beat their baselines
    assert tuned, "the tiny search measured no valid candidate"

    # the same options: the tuned kernels are the ones compile builds, and it says so
    result = cli("compile", model, "--prune", "zero", "--tuning-log", fast,
                 "-o", tmp_path / "pruned.so")
    assert result.exit_code == 0, result.stderr
    assert f"{len(tuned)} from tuning records" in result.stderr, result.stderr
    # without --prune the convolutions have other shapes: their records do not apply
    plain = mcc.compile(model, tuning_logs=[fast], verify=False).report["schedule"]
    assert plain["from_records"] < len(tuned)
    # records measured on another CPU are counted as ignored, not applied
    foreign = tmp_path / "foreign"
    _rewritten(log, foreign, 0.5)
    path = foreign / FAMILY / "database_tuning_record.json"
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    for ln in lines:
        ln[1][2]["mcpu"] = "sapphirerapids"
    path.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    result = cli("compile", model, "--prune", "zero", "--tuning-log", foreign,
                 "-o", tmp_path / "foreign.so", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert "0 from tuning records" in result.stderr
    assert f"ignored tuning records for other targets: {len(lines)} for llvm" in result.stderr
    # an int8 compile reports its kernels' sources and the ignored records the same way
    result = cli("compile", model, "--quantize", "int8", "--calibration", "random",
                 "--tuning-log", foreign, "-o", tmp_path / "int8.so", "--no-verify")
    assert result.exit_code == 0, result.stderr
    assert "0 from tuning records" in result.stderr
    assert f"ignored tuning records for other targets: {len(lines)} for llvm" in result.stderr
