"""How well ``mcc tune`` keeps a time budget and how fast Ctrl-C stops it, on a real network.

    .venv/bin/python benchmarks/tune_control.py --model mobilenet_v2 --budget-min 0.5

1. ``mcc tune MODEL --time-budget B`` on a fresh log (so the default-rule baselines run
   first, the phase that used to overrun the budget): the time ``mcc tune`` reports
   against the budget.
2. The same command resumed with a large ``--trials``, interrupted by SIGINT to its
   process group (what a terminal's Ctrl-C does) a few seconds after the search's first
   batch is in the log (the remaining baselines are measured first):
   seconds from SIGINT to exit, the exit code, the last stderr line, and whether any
   record in the log is a failure (the interrupt's killed workers must not be logged).

Runs the ``mcc`` CLI of this venv in subprocesses, as a user would. Wrap the whole run in
``flock /tmp/mcc-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

MCC = str(Path(sys.executable).parent / "mcc")
RECORDS = "llvm-x86_64/database_tuning_record.json"


def _lines(log: Path) -> list:
    path = log / RECORDS
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def budget_run(model: Path, log: Path, minutes: float) -> dict:
    start = time.monotonic()
    proc = subprocess.run([MCC, "tune", str(model), "--time-budget", str(minutes),
                           "--tuning-log", str(log), "--json"], capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    report = json.loads(proc.stdout)
    return {"budget_s": minutes * 60, "tune_s": report["seconds"], "wall_s": round(wall, 1),
            "trials": report["trials"], "records": report["records_after"],
            "over_s": round(report["seconds"] - minutes * 60, 1)}


def _searched(log: Path) -> int:
    """Records of the search (not default-rule baselines)."""
    return sum(1 for r in _lines(log) if "mcc_default_rule" not in json.dumps(r[1][0]))


def ctrl_c_run(model: Path, log: Path, after_batch_s: float) -> dict:
    before = len(_lines(log))
    proc = subprocess.Popen([MCC, "tune", str(model), "--trials", "1000000", "--tuning-log",
                             str(log)], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and _searched(log) == 0:
        time.sleep(0.2)  # until the search's first batch is in the log (baselines done)
    time.sleep(after_batch_s)  # into the next batch
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait()
    took = time.monotonic() - sent
    records = _lines(log)
    failed = sum(1 for r in records if sum(r[1][1]) / len(r[1][1]) >= 1e9)
    return {"stop_s": round(took, 1), "exit_code": proc.returncode,
            "records_before": before, "records_after": len(records), "failed_records": failed,
            "last_line": proc.stderr.read().strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=sorted(MODELS))
    parser.add_argument("--budget-min", type=float, default=0.5)
    parser.add_argument("--after-batch-s", type=float, default=3.0)
    args = parser.parse_args()
    model = export_onnx(args.model, HERE / "onnx")
    with tempfile.TemporaryDirectory(prefix="mcc-tune-control-") as tmp:
        log = Path(tmp) / "log"
        budget = budget_run(model, log, args.budget_min)
        print(json.dumps({"model": args.model, "budget": budget}), flush=True)
        stop = ctrl_c_run(model, log, args.after_batch_s)
        print(json.dumps({"model": args.model, "ctrl_c": stop}), flush=True)


if __name__ == "__main__":
    main()
