"""``--layout auto`` against each fixed layout, per benchmark model, side by side in one process.

    .venv/bin/python benchmarks/layout.py [--models resnet18,...] [--layouts NHWC,NCHWc,auto]
                                          [--repeat N] [--cpu-time] [--json out.json]

Compiles each network once per layout (NCHW, NHWC, NCHWc, auto; each verified
against ONNX Runtime), then times them on the same inputs in blocks of ``--repeat`` runs,
twice, the second pass in reverse order, and ONNX Runtime in a block after them. Prints
a Markdown table for docs/BENCHMARKS.md. With ``--cpu-time`` everything runs on
one thread (``TVM_NUM_THREADS=1``, ORT ``intra_op_num_threads=1``) and each call
is timed by the process's CPU time: the work one core does, which a busy shared
machine disturbs far less than wall time. BERT has no convolution: every layout
gives the same module, so it is left out unless named. NCHW is 24-41x slower
than NHWC with mcc's rules (docs/BENCHMARKS.md) and costs minutes per model;
``--layouts`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

if "--cpu-time" in sys.argv:
    os.environ["TVM_NUM_THREADS"] = "1"  # before TVM starts its thread pool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402

LAYOUTS = ("NCHW", "NHWC", "NCHWc", "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread each, timed by process CPU time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    layouts = args.layouts.split(",")
    fixed = [x for x in layouts if x != "auto"]
    clock = time.process_time if args.cpu_time else time.perf_counter

    rows = []
    for name in args.models.split(","):
        path = export_onnx(name, HERE / "onnx")
        runners, compile_s = {}, {}
        for layout in layouts:
            print(f"== {name} --layout {layout}", file=sys.stderr)
            start = time.perf_counter()
            compiled = mcc.compile(path, layout=layout,
                                   progress=lambda m: print(m, file=sys.stderr))
            compile_s[layout] = time.perf_counter() - start
            feed = random_inputs(compiled.inputs, seed=0, symbolic_size=1)
            runners[layout] = compiled.module.runner(feed)
        samples = {k: [] for k in runners}
        # blocks of runs, twice, the second pass in reverse order so drift in the background
        # load hits every build alike (call-by-call interleaving of ResNet-50 builds made each
        # evict the others' 100 MB of weights from cache: +30% on all of them)
        for order in (list(runners), list(reversed(runners))):
            for key in order:
                runners[key]()  # warm-up
                for _ in range(args.repeat):
                    start = clock()
                    runners[key]()
                    samples[key].append((clock() - start) * 1e3)
        # ONNX Runtime in a block of its own: its worker threads keep spinning after a
        # call and would slow whichever mcc build ran next
        ort_run = _onnxruntime(path, feed, one_thread=args.cpu_time)
        ort_run()
        samples["onnxruntime"] = []
        for _ in range(args.repeat):
            start = clock()
            ort_run()
            samples["onnxruntime"].append((clock() - start) * 1e3)
        median = {k: statistics.median(v) for k, v in samples.items()}
        row = {"model": name, "median_ms": median, "compile_s": compile_s,
               "cpu_time": args.cpu_time}
        if fixed:
            row["best_fixed"] = min(fixed, key=median.get)
            if "auto" in median:
                row["auto_vs_best"] = median["auto"] / median[row["best_fixed"]]
        rows.append(row)
        print(rows[-1], file=sys.stderr)

    unit = "CPU ms, 1 thread" if args.cpu_time else "ms"
    head = [f"{x} {unit}" for x in layouts] + [f"ONNX Runtime {unit}"]
    tail = ["best fixed", "auto / best fixed"] if fixed and "auto" in layouts else []
    print("\n| model | " + " | ".join(head + tail) + " |")
    print("|---" * (1 + len(head) + len(tail)) + "|")
    for r in rows:
        m = r["median_ms"]
        cells = [f"{m[x]:.1f}" for x in [*layouts, "onnxruntime"]]
        if tail:
            cells += [r["best_fixed"], f"{r['auto_vs_best']:.2f}"]
        print(f"| {r['model']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def _onnxruntime(path, feed, one_thread: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if one_thread:
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feed)


if __name__ == "__main__":
    main()
