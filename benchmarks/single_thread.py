"""One core each: mcc against ONNX Runtime by CPU time, a ratio that survives a shared machine.

    .venv/bin/python benchmarks/single_thread.py [--models resnet50,...] [--repeat N]

Wall-clock ratios (benchmarks/run.py) swing with other users' load, and the two
runtimes' thread pools suffer from it differently. Here both run on one thread
(``TVM_NUM_THREADS=1``; ORT ``intra_op_num_threads=1``) and each call is timed
by the process's CPU time, i.e. the work one core does, in interleaved rounds
on the same inputs. The module is the same one ``mcc compile`` builds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # before TVM starts its thread pool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402


def cpu_ms(fn) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1e3


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        path = export_onnx(name, HERE / "onnx")
        compiled = mcc.compile(path, progress=lambda m: print(m, file=sys.stderr))
        feed = random_inputs(compiled.inputs, seed=0, symbolic_size=1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        runners = {"mcc": compiled.module.runner(feed),
                   "onnxruntime": lambda s=session, f=feed: s.run(None, f)}
        samples = {k: [] for k in runners}
        for fn in runners.values():
            fn()
        for _ in range(args.repeat):
            for key, fn in runners.items():
                samples[key].append(cpu_ms(fn))
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append((name, med["mcc"], med["onnxruntime"]))
        print(f"{name}: mcc {med['mcc']:.1f} ms, ORT {med['onnxruntime']:.1f} ms (CPU, 1 thread)",
              file=sys.stderr)

    print("\n| model | mcc CPU ms (1 thread) | ORT CPU ms (1 thread) | mcc / ORT |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
