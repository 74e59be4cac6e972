"""bf16 speed and accuracy: mcc bf16 vs mcc fp32 vs ONNX Runtime fp32.

    .venv/bin/python benchmarks/bf16.py [--models resnet50,mobilenet_v2,minilm]
                                        [--repeat 20] [--json bf16.json] [--reuse]
                                        [--single-thread]

Per network (benchmarks/models.py, seeded random weights, exported to ONNX; ``minilm`` is
``BertEncoder(hidden=384, layers=6, heads=12, ffn=1536)`` at sequence length 128):
  * mcc fp32: ``mcc.compile(model)``;
  * mcc bf16: ``mcc.compile(model, precision="bf16")`` (needs an AVX-512 BF16 CPU);
  * ONNX Runtime fp32 (CPU provider).
All three run in this one process on the same input. Timing alternates between the
runtimes in blocks (``ROUNDS`` rounds), and the median per runtime is reported, with the
ratios; the bf16 output is compared with ORT fp32 by cosine similarity.

``--single-thread``: one thread per runtime (TVM_NUM_THREADS=1, ORT intra_op 1) and each
call timed by this process's CPU time (robust on a shared, loaded machine). Without it:
wall clock, blocks still alternate (ORT's spinning workers can slow whatever runs right
after it on 2 cores: compare with --single-thread before trusting small differences).
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

from models import MODELS, BertEncoder, export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402

ROUNDS = 5


def _minilm():
    return BertEncoder(hidden=384, layers=6, heads=12, ffn=1536)


def _register_minilm():
    import torch

    MODELS.setdefault("minilm", (_minilm, lambda: torch.randint(0, 30522, (1, 128)),
                                 "input_ids"))


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def samples_ms(fn, repeat: int) -> list[float]:
    clock = time.process_time if SINGLE_THREAD else time.perf_counter
    out = []
    for _ in range(repeat):
        start = clock()
        fn()
        out.append((clock() - start) * 1e3)
    return out


def bench_model(name: str, repeat: int, workdir: Path, reuse: bool) -> dict:
    import onnxruntime as ort

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    path = export_onnx(name, workdir)
    log(f"== {name}")
    so = {p: workdir / f"{name}_{p}.so" for p in ("fp32", "bf16")}
    compile_s, modules, report = {}, {}, {}
    for precision in ("fp32", "bf16"):
        if reuse and so[precision].exists():
            modules[precision] = mcc.load(so[precision])
            continue
        start = time.perf_counter()
        compiled = mcc.compile(path, precision=precision, progress=log)
        compile_s[precision] = round(time.perf_counter() - start, 1)
        compiled.export(so[precision])
        if precision == "bf16":
            report = {"precision": compiled.report.get("precision"),
                      "verify": compiled.report.get("verify")}
        modules[precision] = compiled.module
    options = ort.SessionOptions()
    if SINGLE_THREAD:
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = random_inputs(modules["fp32"].inputs, seed=7)
    runners = {f"mcc_{p}": modules[p].runner(feed) for p in ("fp32", "bf16")}
    runners["ort_fp32"] = lambda: sess.run(None, feed)
    outputs = {k: (list(r().values())[0] if k.startswith("mcc") else r()[0])
               for k, r in runners.items()}
    for fn in runners.values():  # warm-up
        fn()
    samples = {key: [] for key in runners}
    for _ in range(ROUNDS):
        for key, fn in runners.items():
            samples[key] += samples_ms(fn, max(1, repeat // ROUNDS))
    times = {k: float(np.median(v)) for k, v in samples.items()}
    for key, ms in times.items():
        log(f"{key}: {ms:.2f} ms (median of {len(samples[key])}, {ROUNDS} alternating blocks)")
    return {
        "model": name, "compile_s": compile_s, "median_ms": times,
        "bf16_vs_mcc_fp32": times["mcc_bf16"] / times["mcc_fp32"],
        "bf16_vs_ort_fp32": times["mcc_bf16"] / times["ort_fp32"],
        "cosine_bf16_vs_ort_fp32": cosine(outputs["mcc_bf16"], outputs["ort_fp32"]),
        "cosine_mcc_fp32_vs_ort_fp32": cosine(outputs["mcc_fp32"], outputs["ort_fp32"]),
        **report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2,minilm")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", action="store_true",
                        help="time the modules the last run left in benchmarks/onnx/")
    parser.add_argument("--single-thread", action="store_true",
                        help="one thread each, timed by CPU time (for a busy machine)")
    args = parser.parse_args()
    _register_minilm()
    workdir = HERE / "onnx"
    workdir.mkdir(exist_ok=True)
    rows = []
    for name in args.models.split(","):
        rows.append(bench_model(name, args.repeat, workdir, args.reuse))
        if args.json:  # after each model: a long run interrupted keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))
    print("timing: " + ("CPU time of one thread per runtime (--single-thread)" if SINGLE_THREAD
                        else f"wall clock, TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')}"))
    print("| model | bf16 kernels | mcc fp32 ms | mcc bf16 ms | ORT fp32 ms | bf16 / mcc fp32 "
          "| bf16 / ORT fp32 | cosine bf16 vs ORT fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["median_ms"]
        kernels = (r.get("precision") or {}).get("bf16_kernels", "?")
        print(f"| {r['model']} | {kernels} | {t['mcc_fp32']:.2f} | {t['mcc_bf16']:.2f} "
              f"| {t['ort_fp32']:.2f} | {r['bf16_vs_mcc_fp32']:.2f} | {r['bf16_vs_ort_fp32']:.2f} "
              f"| {r['cosine_bf16_vs_ort_fp32']:.6f} |")


if __name__ == "__main__":
    main()
