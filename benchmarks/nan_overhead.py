"""What NaN-keeping max/min (mcc.build.nan) costs: the same model built with and without
it, run in one process on one thread, interleaved, timed by CPU time.

    .venv/bin/python benchmarks/nan_overhead.py mobilenet_v2 100

Prints each build's schedule coverage (tuning records matched) and the outputs' largest
difference, then the median CPU ms of each.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # before TVM starts its thread pool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from models import export_onnx  # noqa: E402

import mcc  # noqa: E402
import mcc.build.nan as nan  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402


def main() -> None:
    name, repeat = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60
    path = export_onnx(name, HERE / "onnx")
    register, compiled = nan.register, {}
    for label in ("off", "on"):
        nan.register = (lambda: "default") if label == "off" else register
        compiled[label] = mcc.compile(path)
        print(label, compiled[label].report["schedule"], file=sys.stderr)
    nan.register = register
    feed = random_inputs(compiled["on"].inputs, seed=0, symbolic_size=1)
    outs = {k: c.run(feed) for k, c in compiled.items()}
    for key in outs["on"]:
        diff = float(np.max(np.abs(outs["on"][key] - outs["off"][key])))
        print(f"max abs diff {key}: {diff}", file=sys.stderr)
    runners = {k: c.module.runner(feed) for k, c in compiled.items()}
    samples = {k: [] for k in runners}
    for fn in runners.values():
        fn()
    for i in range(repeat):
        for key in ("off", "on") if i % 2 == 0 else ("on", "off"):
            start = time.process_time()
            runners[key]()
            samples[key].append((time.process_time() - start) * 1e3)
    off, on = (statistics.median(samples[k]) for k in ("off", "on"))
    print(f"{name}: off {off:.2f} ms, on {on:.2f} ms, on/off {on / off:.4f} "
          f"(median of {repeat}, CPU ms, 1 thread)")


if __name__ == "__main__":
    main()
