"""Structured pruning: unpruned vs ``--prune RATIO`` (or ``zero``), side by side in one process.

    .venv/bin/python benchmarks/prune.py [--model resnet50] [--prune 0.3]
                                         [--criterion l1] [--repeat 5] [--json out.json]
    .venv/bin/python benchmarks/prune.py --prune zero --zero-filters 0.3

``--zero-filters S`` first zeroes the share S of every conv's filters in torch
(``ln_structured`` + ``prune.remove``, as a user would) and exports that model; both
builds are then verified against ONNX Runtime, and ``--prune zero`` must stay exact.

Exports the network (benchmarks/models.py, seeded weights, cached in benchmarks/onnx/),
compiles it twice with mcc for this CPU (the unpruned build verified against ONNX
Runtime; the pruned one with the drift against the unpruned model measured on seeded
random inputs), then times both modules alternately on the same input and prints
parameters, FLOPs, .so size, latency and the speed-up as a Markdown table.
No fine-tuning happens: a ratio prune's drift is the raw cost of the removed filters.

A ratio prune is also checked for exactness: ONNX Runtime runs the original model with
the removed filters' weights set to zero (biases and batch norm kept), which is what the
pruned module computes, so the two must agree to float rounding.
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
from mcc.tensors import random_inputs  # noqa: E402


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
    import torch
    from torch import nn
    from torch.nn.utils import prune

    path = out_dir / f"{name}-zero{share:g}.onnx"
    if path.exists():
        return path
    build, example, input_name = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            prune.ln_structured(module, "weight", amount=share, n=1, dim=0)
            prune.remove(module, "weight")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(model, (example(),), str(tmp), input_names=[input_name],
                          output_names=["output"], opset_version=17, dynamo=False)
    tmp.rename(path)
    return path


def masked_reference(path: Path, layers: list[dict]):
    """An ORT session for ``path`` with the report's removed filters zeroed, or None (with the
    reason printed) if the ONNX weight nodes do not line up with the report's layers."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from mcc.frontends.onnx_import import _fold_shape_subgraphs

    # the model as mcc imports it (onnxslim folds BN into the convs): its node order is
    # the order of the report's layers
    model = _fold_shape_subgraphs(onnx.load(str(path)))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [n for n in model.graph.node
             if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1
             and n.input[1] in inits]
    if len(nodes) != len(layers):
        _say(f"masked check skipped: {len(nodes)} weight nodes vs {len(layers)} layers")
        return None
    for node, layer in zip(nodes, layers):
        weight = numpy_helper.to_array(inits[node.input[1]]).copy()
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        out_axis = 0 if node.op_type == "Conv" or trans_b else 1
        if weight.shape[out_axis] != layer["out"][0]:
            _say(f"masked check skipped: {node.name} does not match {layer['layer']}")
            return None
        index = [slice(None)] * weight.ndim
        index[out_axis] = list(layer["removed"])
        weight[tuple(index)] = 0
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(weight, node.input[1]))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


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
        masked_err = None
        if pruned["mode"] == "ratio":
            session = masked_reference(path, pruned["layers"])
            if session is not None:
                got = builds[f"--prune {args.prune}"][0].run(feed)
                want = dict(zip([o.name for o in session.get_outputs()],
                                session.run(None, feed)))
                masked_err = max(float(abs(got[k] - want[k]).max()) for k in want)
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
    if masked_err is not None:
        print(f"pruned module vs ONNX Runtime on the model with the removed filters zeroed: "
              f"max abs err {masked_err:.3g}")
    if "drift" in pruned:
        from mcc.pruning import drift_summary

        print(f"drift: {drift_summary(pruned['drift'])}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": args.model, "prune": args.prune, "criterion": args.criterion,
            "times_ms": times, "masked_max_abs_err": masked_err, "medians_ms": medians,
            "speedup": speedup,
            "so_bytes": {label: size for label, (_, size, _) in builds.items()},
            "compile_s": {label: s for label, (_, _, s) in builds.items()},
            "report": pruned}, indent=2))


if __name__ == "__main__":
    main()
