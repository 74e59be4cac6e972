"""Tune the benchmark networks with ``mcc tune``, then time tuned mcc against ONNX Runtime.

    .venv/bin/python benchmarks/tune.py --models mobilenet_v2,resnet50 --minutes 60
    .venv/bin/python benchmarks/tune.py --models mobilenet_v2 --skip-tune   # time only

Tuning appends to ``tuning_logs/`` (the shipped records; resumable, so a second run
continues where the first stopped). Timing compiles each network for this CPU from
those records (verified against ONNX Runtime at the default 1e-4 tolerances), then
times batch-1 latency of mcc and ONNX Runtime side by side in one process on the same
inputs, and prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tune(name: str, path: Path, minutes: float, log: Path, per_iter: int) -> dict:
    from mcc.tuning import SearchOptions

    _say(f"== tune {name} for {minutes} min -> {log}")
    report = mcc.tune(path, time_budget=minutes, tuning_log=log, progress=_say,
                      search=SearchOptions(trials_per_iter=per_iter))
    for line in report.lines():
        _say(line)
    return report.to_json()


def measure(name: str, path: Path, repeat: int) -> dict:
    from mcc.verify.benchmark import time_module

    _say(f"== compile + time {name}")
    start = time.perf_counter()
    compiled = mcc.compile(path, progress=_say)
    compile_s = time.perf_counter() - start
    report = time_module(compiled.module, compiled.reference_name, compiled.reference,
                         "x86", repeat, warmup=2, label=name, max_seconds=90)
    for line in report.lines():
        _say(line)
    err = max(o["max_abs"] for o in compiled.report["verify"]["outputs"].values())
    return {"model": name, "compile_s": round(compile_s, 1), "max_abs_err": err,
            "schedule": compiled.report["schedule"], **report.to_json()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,resnet50")
    parser.add_argument("--minutes", type=float, default=60.0, help="tuning budget per model")
    parser.add_argument("--log", type=Path, default=ROOT / "tuning_logs")
    parser.add_argument("--trials-per-iter", type=int, default=64,
                        help="candidates measured per batch (smaller: more tasks covered early)")
    parser.add_argument("--skip-tune", action="store_true", help="only compile and time")
    parser.add_argument("--skip-measure", action="store_true", help="only tune")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    results = []
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name}; choose from {', '.join(MODELS)}")
        path = export_onnx(name, HERE / "onnx")
        row = {"model": name}
        if not args.skip_tune:
            row["tune"] = tune(name, path, args.minutes, args.log, args.trials_per_iter)
        if not args.skip_measure:
            row.update(measure(name, path, args.repeat))
        results.append(row)

    timed = [r for r in results if "mcc" in r]
    if timed:
        print("| model | tuning min (this run) | kernels from records | max abs err vs ORT "
              "| mcc median ms | ORT median ms | mcc / ORT |")
        print("|---|---|---|---|---|---|---|")
        for r in timed:
            sched = r["schedule"]
            tuned = f"{r['tune']['seconds'] / 60:.1f}" if "tune" in r else "-"
            print(f"| {r['model']} | {tuned} | {sched['from_records']}/{sched['tasks']} "
                  f"| {r['max_abs_err']:.2e} | {r['mcc']['median_ms']:.2f} "
                  f"| {r['reference']['median_ms']:.2f} | {r['ratio']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
