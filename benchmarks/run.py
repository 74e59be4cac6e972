"""mcc against ONNX Runtime on the benchmark networks, side by side in one process.

    .venv/bin/python benchmarks/run.py [--models resnet18,resnet50,...] [--repeat N]
                                       [--json results.json]

Exports each network to ONNX (cached in benchmarks/onnx/), compiles it with mcc
for this CPU (verifying against ONNX Runtime at the default 1e-4 tolerances),
times batch-1 latency of both runtimes on the same inputs, and prints a
Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.verify.benchmark import time_module  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        path = export_onnx(name, HERE / "onnx")
        print(f"== {name} ({path.stat().st_size / 1e6:.0f} MB ONNX)", file=sys.stderr)
        start = time.perf_counter()
        compiled = mcc.compile(path, progress=lambda m: print(m, file=sys.stderr))
        compile_s = time.perf_counter() - start
        report = time_module(compiled.module, compiled.reference_name, compiled.reference,
                             "x86", args.repeat, warmup=2, label=name, max_seconds=90)
        rows.append({"model": name, "compile_s": round(compile_s, 1),
                     "verify": compiled.report.get("verify"), **report.to_json()})
        print("\n".join(report.lines()), file=sys.stderr)

    print(f"\nCPU: {platform.processor() or platform.machine()}, "
          f"mcc {mcc.__version__}, target x86 (host)\n")
    print("| model | compile s | max abs err vs ORT | mcc median ms | mcc p90 ms "
          "| ORT median ms | ORT p90 ms | mcc / ORT |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        err = max(o["max_abs"] for o in r["verify"]["outputs"].values())
        print(f"| {r['model']} | {r['compile_s']} | {err:.2e} | {r['mcc']['median_ms']:.1f} "
              f"| {r['mcc']['p90_ms']:.1f} | {r['reference']['median_ms']:.2f} "
              f"| {r['reference']['p90_ms']:.2f} | {r['ratio']:.1f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
