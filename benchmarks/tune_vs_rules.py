"""Time a network compiled from a tuning log against the untuned compile and ONNX Runtime.

    .venv/bin/python benchmarks/tune.py --models mobilenet_v2 --minutes 10 \\
        --log /tmp/mnv2log --trials-per-iter 16 --skip-measure
    flock /tmp/mcc-bench.lock .venv/bin/python benchmarks/tune_vs_rules.py \\
        --model mobilenet_v2 --log /tmp/mnv2log

"Untuned" still applies the shipped records in tuning_logs/: move them aside to compare
against the default rules alone. Both modules are compiled (and verified against ONNX
Runtime at the default 1e-4 tolerances) in one process, then timed on the same inputs in
blocks of ``--rounds`` runs: mcc-untuned, mcc-tuned, ONNX Runtime, then again in reverse
order. With the
default-rule baselines of ``mcc tune`` (mcc.tuning.baseline), the tuned module should never
be slower than the untuned one beyond noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=sorted(MODELS))
    parser.add_argument("--log", type=Path, required=True, help="tuning log directory")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--layout", default="auto",
                        help="e.g. NHWC: the layout the log was tuned in, for both builds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from mcc.runtime.tensors import random_inputs

    path = export_onnx(args.model, HERE / "onnx")
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    untuned = mcc.compile(path, tuning_logs=[], layout=args.layout, progress=say)
    tuned = mcc.compile(path, tuning_logs=[args.log], layout=args.layout, progress=say)
    feed = random_inputs(tuned.module.inputs, seed=0, symbolic_size=1)
    runs = {"untuned": untuned.module.runner(feed), "tuned": tuned.module.runner(feed),
            "onnxruntime": lambda: tuned.reference(feed)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    # Blocks, not interleaved calls: ONNX Runtime's threads keep spinning after a run
    # and would slow the next module 10x on 2 cores. Two passes, the second in reverse
    # order, so drift in the background load hits every module alike.
    for names in (list(runs), list(reversed(runs))):
        for name in names:
            fn = runs[name]
            for _ in range(3):
                fn()
            for _ in range(args.rounds):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    sched = tuned.report["schedule"]
    result = {"model": args.model, "log": str(args.log), "schedule_tuned": sched,
              "median_ms": {k: round(v, 3) for k, v in med.items()},
              "tuned_over_untuned": round(med["tuned"] / med["untuned"], 3),
              "verify_max_abs": {k: max(o["max_abs"] for o in c.report["verify"]["outputs"]
                                        .values()) for k, c in (("untuned", untuned),
                                                                ("tuned", tuned))}}
    print("| model | kernels from records | rules beat records | untuned ms | tuned ms "
          "| ORT ms | tuned / untuned |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.model} | {sched['from_records']}/{sched['tasks']} "
          f"| {sched.get('rules_beat_records', 0)} | {med['untuned']:.2f} | {med['tuned']:.2f} "
          f"| {med['onnxruntime']:.2f} | {result['tuned_over_untuned']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
