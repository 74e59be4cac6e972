"""``--precision auto``: what it picks per network, each candidate's latency and loss, compile time.

    .venv/bin/python benchmarks/precision_auto.py [--models resnet50,mobilenet_v2,minilm]
                                                  [--budget 0.01] [--samples 20]
                                                  [--json auto.json] [--single-thread]

Per network (benchmarks/models.py, seeded random weights, exported to ONNX; ``minilm`` as
in benchmarks/bf16.py): ``--samples`` seeded random inputs written to an .npz (the weights
are random too, so there is no real data; as benchmarks/int8.py does), then
``mcc.compile(model, precision="auto", calibration=DATA, accuracy_budget=BUDGET)``. The
latencies are auto's own: the candidates timed in alternating blocks in one process
(mcc.verify.benchmark.time_interleaved), wall clock, all threads. Prints a Markdown table.

``--single-thread``: TVM_NUM_THREADS=1 and auto's candidates timed by this process's CPU
time (as benchmarks/bf16.py and int8.py do): robust on a shared, loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SINGLE_THREAD = "--single-thread" in sys.argv
if SINGLE_THREAD:  # before TVM starts its thread pool (importing mcc)
    os.environ["TVM_NUM_THREADS"] = "1"

from bf16 import _register_minilm  # noqa: E402
from models import export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402


def samples_npz(path: Path, out: Path, count: int) -> Path:
    from mcc.frontends import import_model

    imported = import_model(str(path))
    rules = imported.feed_plan.rules if imported.feed_plan is not None else None
    samples = [random_inputs(imported.inputs, seed=100 + i, rules=rules) for i in range(count)]
    np.savez(out, **{k: np.stack([s[k] for s in samples]) for k in samples[0]})
    return out


def run_model(name: str, budget: float, count: int, workdir: Path) -> dict:
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    path = export_onnx(name, workdir)
    data = samples_npz(path, workdir / f"{name}_samples.npz", count)
    log(f"== {name}")
    start = time.perf_counter()
    compiled = mcc.compile(str(path), precision="auto", calibration=str(data),
                           accuracy_budget=budget, progress=log)
    seconds = time.perf_counter() - start
    info = compiled.metadata["precision"]
    stages = {k: v["seconds"] for k, v in compiled.report["stages"].items()}
    return {"model": name, "compile_s": seconds, "precision": info, "stages": stages}


def _cell(cands: dict, name: str) -> str:
    c = cands.get(name, {})
    if "dropped" in c:
        return "dropped: " + c["dropped"][:60]
    ms = f"{c['latency_ms']:.2f}"
    return ms if name == "fp32" else f"{ms} ({c['loss']:.2g})"


def table(rows: list[dict]) -> list[str]:
    out = ["| model | picked | fp32 ms | bf16 ms (loss) | int8 ms (loss) | compile s |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        cands = row["precision"]["candidates"]
        out.append(f"| {row['model']} | {row['precision']['chosen']} | {_cell(cands, 'fp32')} "
                   f"| {_cell(cands, 'bf16')} | {_cell(cands, 'int8')} | "
                   f"{row['compile_s']:.0f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2,minilm")
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--single-thread", action="store_true")
    args = parser.parse_args()
    _register_minilm()
    if args.single_thread:
        from mcc.driver import precision_choice
        from mcc.verify.benchmark import time_interleaved

        precision_choice.time_candidates = lambda runs: {
            k: t.median_ms for k, t in time_interleaved(runs, clock=time.process_time).items()}
    workdir = HERE / "onnx"
    rows = []
    for name in args.models.split(","):
        rows.append(run_model(name, args.budget, args.samples, workdir))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        print("\n".join(table(rows[-1:])), flush=True)
    print("\n".join(table(rows)))


if __name__ == "__main__":
    main()
