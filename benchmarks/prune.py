"""Structured pruning: unpruned vs ``--prune RATIO`` (or ``zero``), side by side in one process.

    .venv/bin/python benchmarks/prune.py [--model resnet50] [--prune 0.3]
                                         [--criterion l1] [--repeat 5] [--json out.json]
    .venv/bin/python benchmarks/prune.py --prune zero --zero-filters 0.3

``--zero-filters S`` first zeroes the share S of every conv's filters in torch
(``ln_structured`` + ``prune.remove``, as a user would) and exports that model; both
builds are then verified against ONNX Runtime, and ``--prune zero`` must stay exact.

Exports the network (benchmarks/models.py, seeded weights, cached in benchmarks/onnx/),
compiles it twice with mcc for this CPU (the pruned build also measuring its drift
against the unpruned model on seeded random inputs), then times both modules
alternately on the same input and prints parameters, FLOPs, .so size, latency and the
speed-up as a Markdown table.
No fine-tuning happens: a ratio prune's drift is the raw cost of the removed filters.

A ratio-pruned build is verified by the compile itself against ONNX Runtime running the
model with the removed filters' weights set to zero (biases and batch norm kept), which
is what the pruned module computes; the script prints both builds' verification.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _alternate(runs: dict, repeat: int) -> dict[str, list[float]]:
    """Time each runner ``repeat`` times, alternating, after one warm-up each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def export_zeroed(name: str, share: float, out_dir: Path) -> Path:
    """``name`` with the lowest-l1 share of each conv's filters zeroed, exported to ONNX."""
    from torch import nn
    from torch.nn.utils import prune

    def zero_filters(model) -> None:
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.groups == 1:
                prune.ln_structured(module, "weight", amount=share, n=1, dim=0)
                prune.remove(module, "weight")

    return export_onnx(name, out_dir, edit=zero_filters, suffix=f"-zero{share:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--prune", default="0.3", help="'zero' or a ratio in (0, 1)")
    parser.add_argument("--criterion", default="l1", choices=["l1", "l2"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--zero-filters", type=float, metavar="SHARE",
                        help="zero this share of each conv's filters in torch before export")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    path = (export_zeroed(args.model, args.zero_filters, HERE / "onnx") if args.zero_filters
            else export_onnx(args.model, HERE / "onnx"))
    with tempfile.TemporaryDirectory(prefix="mcc-prune-bench-") as tmp:
        builds = {}
        for label, prune in (("unpruned", None), (f"--prune {args.prune}", args.prune)):
            _say(f"== {args.model} {label}")
            start = time.perf_counter()
            compiled = mcc.compile(path, prune=prune, prune_criterion=args.criterion,
                                   progress=_say)
            seconds = time.perf_counter() - start
            so = compiled.export(Path(tmp) / f"{len(builds)}.so")
            builds[label] = (compiled, so.stat().st_size, seconds)
        pruned = builds[f"--prune {args.prune}"][0].report["prune"]
        feed = random_inputs(builds["unpruned"][0].inputs, seed=0)
        checks = {label: c.report.get("verify") for label, (c, _, _) in builds.items()}
        times = _alternate({label: c.module.runner(feed) for label, (c, _, _) in builds.items()},
                           args.repeat)

    medians = {label: statistics.median(t) for label, t in times.items()}
    speedup = medians["unpruned"] / medians[f"--prune {args.prune}"]
    costs = {"unpruned": pruned["before"], f"--prune {args.prune}": pruned["after"]}
    print(f"\nmodel {args.model}, prune {args.prune} ({args.criterion}), mcc {mcc.__version__}, "
          f"{args.repeat} alternating timed runs each after one warm-up, no fine-tuning"
          + (f"; {args.zero_filters:g} of each conv's filters zeroed in torch first"
             if args.zero_filters else "") + "\n")
    print("| build | params (M) | GFLOPs | .so MB | compile s | median ms | min ms |")
    print("|---|---|---|---|---|---|---|")
    for label, (_, size, seconds) in builds.items():
        print(f"| {label} | {costs[label]['params'] / 1e6:.2f} | {costs[label]['flops'] / 1e9:.2f} "
              f"| {size / 1e6:.1f} | {seconds:.1f} | {medians[label]:.1f} "
              f"| {min(times[label]):.1f} |")
    print(f"\nspeed-up (median unpruned / median pruned): {speedup:.2f}x")
    print(f"channels removed: {pruned['channels_removed']}; border bias maps: "
          f"{pruned['bias_maps']}")
    for label, check in checks.items():
        if check:
            worst = max(o["max_abs"] for o in check["outputs"].values())
            print(f"{label} verified vs {check['reference']}: max abs err {worst:.3g}, "
                  f"{'ok' if check['ok'] else 'FAILED'}")
    if "drift" in pruned:
        from mcc.driver.pruning import drift_summary

        print(f"drift: {drift_summary(pruned['drift'])}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "prune": args.prune, "criterion": args.criterion,
            "times_ms": times, "verify": checks, "medians_ms": medians,
            "speedup": speedup,
            "so_bytes": {label: size for label, (_, size, _) in builds.items()},
            "compile_s": {label: s for label, (_, _, s) in builds.items()},
            "report": pruned}, indent=2))


if __name__ == "__main__":
    main()
