"""``--layout auto`` against each fixed layout, per benchmark model, side by side in one process.

    .venv/bin/python benchmarks/layout.py [--models resnet18,...] [--repeat N] [--json out.json]

Compiles each network once per layout (NCHW, NHWC, auto; each verified against
ONNX Runtime), then times all of them and ONNX Runtime in interleaved rounds on
the same inputs, so background load hits every variant alike. Prints a Markdown
table for docs/BENCHMARKS.md. BERT has no convolution: every layout gives the
same module, so it is left out unless named.
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

from models import export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.tensors import random_inputs  # noqa: E402

LAYOUTS = ("NCHW", "NHWC", "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    rows = []
    for name in args.models.split(","):
        path = export_onnx(name, HERE / "onnx")
        runners, compile_s, reference = {}, {}, None
        for layout in LAYOUTS:
            print(f"== {name} --layout {layout}", file=sys.stderr)
            start = time.perf_counter()
            compiled = mcc.compile(path, layout=layout,
                                   progress=lambda m: print(m, file=sys.stderr))
            compile_s[layout] = time.perf_counter() - start
            feed = random_inputs(compiled.inputs, seed=0, symbolic_size=1)
            runners[layout] = compiled.module.runner(feed)
            reference = (compiled.reference_name, lambda f=feed, c=compiled: c.reference(f))
        runners[reference[0]] = reference[1]
        samples = {k: [] for k in runners}
        for fn in runners.values():  # warm-up
            fn()
        for _ in range(args.repeat):  # interleaved rounds
            for key, fn in runners.items():
                start = time.perf_counter()
                fn()
                samples[key].append((time.perf_counter() - start) * 1e3)
        median = {k: statistics.median(v) for k, v in samples.items()}
        best_fixed = min(("NCHW", "NHWC"), key=median.get)
        rows.append({"model": name, "median_ms": median, "compile_s": compile_s,
                     "best_fixed": best_fixed,
                     "auto_vs_best": median["auto"] / median[best_fixed]})
        print(rows[-1], file=sys.stderr)

    print("\n| model | NCHW ms | NHWC ms | auto ms | ONNX Runtime ms | best fixed "
          "| auto / best fixed |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median_ms"]
        ref = next(v for k, v in m.items() if k not in LAYOUTS)
        print(f"| {r['model']} | {m['NCHW']:.1f} | {m['NHWC']:.1f} | {m['auto']:.1f} "
              f"| {ref:.1f} | {r['best_fixed']} | {r['auto_vs_best']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
