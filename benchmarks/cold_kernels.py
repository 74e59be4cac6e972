"""Each kernel of a network from a tuning log against mcc's default rules, timed hot and cold.

    flock /tmp/mcc-bench.lock .venv/bin/python benchmarks/cold_kernels.py \\
        --model resnet50 --log /tmp/tunelog4 --layout NHWC [--top 8]

Why: a tuner that times kernels hot (weights in cache, as MetaSchedule does by default)
favours schedules that re-read weights, which run slower inside the network, where each
layer's weights come from memory. Both schedules of each kernel (the log's, as
``mcc compile`` applies it, and the default rules') are built alone and timed with TVM's
time evaluator, one run per repeat, without and with ``cache_flush_cpu_non_first_arg``
(every argument but the input flushed before each run, as ``mcc tune`` measures on CPUs).
The log's build also reads the shipped ``tuning_logs/``, as a compile does; the rules'
build reads no log.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import MODELS, export_onnx  # noqa: E402


def scheduled_kernels(mod, target, family, dirs) -> dict:
    """Kernel name (repacking suffix dropped) -> scheduled PrimFunc."""
    import tvm

    import mcc.schedule

    if not dirs:  # the rules alone: no shipped or local records either
        saved = mcc.schedule.record_dirs_for
        mcc.schedule.record_dirs_for = lambda *_: []
    try:
        scheduled, _ = mcc.schedule.schedule(mod, target, family, dirs)
    finally:
        if not dirs:
            mcc.schedule.record_dirs_for = saved
    return {gv.name_hint.replace("_prepacked", ""): f for gv, f in scheduled.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and not gv.name_hint.endswith("_weight_prepack")}


def time_kernel(func, target, flush: bool, repeat: int) -> float:
    import numpy as np
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random([int(d) for d in p.shape]).astype(p.dtype))
            for p in func.params]
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat,
                                   f_preproc="cache_flush_cpu_non_first_arg" if flush else "")
    return statistics.median(timer(*args).results) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--log", type=Path, required=True, help="tuning log directory")
    parser.add_argument("--layout", default="NHWC", help="the layout the log was tuned in")
    parser.add_argument("--top", type=int, default=8, help="heaviest kernels to time")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from mcc.build.pipeline import optimize
    from mcc.frontends import import_model
    from mcc.targets import resolve_target

    preset = resolve_target("x86")
    target = preset.tvm_target()
    imported = import_model(export_onnx(args.model, HERE / "onnx"), {}, None)
    mod, _ = optimize(imported.mod, target, layout=args.layout)
    tuned = scheduled_kernels(mod, target, preset.family, [str(args.log)])
    rules = scheduled_kernels(mod, target, preset.family, [])
    names = [n for n in tuned if n in rules and ("conv" in n or "matmul" in n)]
    hot_rules = {n: time_kernel(rules[n], target, False, args.repeat) for n in names}
    names = sorted(names, key=hot_rules.get, reverse=True)[:args.top]
    print("| kernel | log hot us | log cold us | rules hot us | rules cold us | log / rules cold |")
    print("|---|---|---|---|---|---|")
    for n in names:
        cold_log = time_kernel(tuned[n], target, True, args.repeat)
        cold_rules = time_kernel(rules[n], target, True, args.repeat)
        print(f"| {n} | {time_kernel(tuned[n], target, False, args.repeat):.0f} "
              f"| {cold_log:.0f} | {hot_rules[n]:.0f} | {cold_rules:.0f} "
              f"| {cold_log / cold_rules:.2f} |", flush=True)


if __name__ == "__main__":
    main()
