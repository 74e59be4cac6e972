"""int8 speed and accuracy: mcc int8 vs mcc fp32 vs ONNX Runtime fp32 and its own QDQ int8.

    .venv/bin/python benchmarks/int8.py [--models resnet50,bert_base] [--samples 4]
                                        [--repeat 20] [--json int8.json] [--reuse]
                                        [--single-thread]

Per network (benchmarks/models.py, seeded random weights, exported to ONNX):
  * mcc fp32: ``mcc.compile(model)``;
  * mcc int8: ``mcc.compile(model, quantize="int8", calibration=DATA)``, DATA = ``--samples``
    seeded random inputs written to an .npz (the networks' weights are random too, so
    there is no real data to calibrate on);
  * ONNX Runtime fp32, and ONNX Runtime int8: ``onnxruntime.quantization.quantize_static``
    (QDQ format, per-channel s8 weights, u8 activations, MinMax) calibrated on the same
    samples, run by the same CPU provider.
All four run in this one process on the same input, each timed in its own block of
calls; outputs of the int8 modules are compared with fp32 by cosine similarity. Prints a
Markdown table.

``--single-thread``: one thread per runtime (TVM_NUM_THREADS=1, ONNX Runtime
intra_op_num_threads=1) and each call timed by this process's CPU time, not wall time:
what one core spends per inference, which background load on a shared machine barely
moves (wall-clock medians of 2-thread runs do move, by 2-3x when the cores are busy).
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

from models import export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402
from mcc.verify.benchmark import time_calls  # noqa: E402


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


ROUNDS = 4  # --single-thread: each runtime timed in this many blocks, in turn


def cpu_samples(fn, repeat: int) -> list[float]:
    """Process CPU time of each of ``repeat`` calls, in ms."""
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append((time.process_time() - start) * 1e3)
    return samples


def ort_qdq(path: Path, samples: list[dict], out: Path) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def bench_model(name: str, n_samples: int, repeat: int, workdir: Path, reuse: bool) -> dict:
    import onnxruntime as ort

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    path = export_onnx(name, HERE / "onnx")
    log(f"== {name}")
    fp32_so, int8_so = workdir / f"{name}_fp32.so", workdir / f"{name}_int8.so"
    qdq = workdir / f"{name}_qdq.onnx"
    fp32_compile = int8_compile = None
    if reuse and fp32_so.exists() and int8_so.exists() and qdq.exists():
        log("reusing the modules of the last run (--reuse)")
        fp32, int8 = mcc.load(fp32_so), mcc.load(int8_so)
    else:
        start = time.perf_counter()
        fp32 = mcc.compile(path, verify=False, progress=log)
        fp32_compile = round(time.perf_counter() - start, 1)
        samples = [random_inputs(fp32.inputs, seed=100 + i) for i in range(n_samples)]
        data = workdir / f"{name}_calibration.npz"
        np.savez(data, **{k: np.stack([s[k] for s in samples]) for k in samples[0]})
        start = time.perf_counter()
        int8 = mcc.compile(path, quantize="int8", calibration=data, verify=False, progress=log)
        int8_compile = round(time.perf_counter() - start, 1)
        ort_qdq(path, samples, qdq)
        fp32.export(fp32_so)
        int8.export(int8_so)
    options = ort.SessionOptions()
    if SINGLE_THREAD:
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {key: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for key, p in (("ort_fp32", path), ("ort_qdq", qdq))}
    feed = random_inputs(fp32.inputs, seed=7)
    module = (lambda c: c.module if hasattr(c, "module") else c)  # noqa: E731
    runners = {"mcc_fp32": module(fp32).runner(feed), "mcc_int8": module(int8).runner(feed)}
    for key, sess in sessions.items():
        runners[key] = (lambda s=sess: s.run(None, feed))
    outputs = {k: (list(r().values())[0] if k.startswith("mcc") else r()[0])
               for k, r in runners.items()}
    # Each runtime is timed in its own block of calls, never interleaved: ONNX Runtime's
    # worker threads keep spinning for a while after a run and, on 2 cores, starve whatever
    # runs next (interleaving measured mcc int8 at 80 ms against 15 ms timed alone).
    times = {}
    if SINGLE_THREAD:  # one thread each: no spinning workers, so blocks can alternate
        samples = {key: [] for key in runners}
        for fn in runners.values():
            fn(), fn()
        for _ in range(ROUNDS):
            for key, fn in runners.items():
                samples[key] += cpu_samples(fn, max(1, repeat // ROUNDS))
        for key in runners:
            times[key] = float(np.median(samples[key]))
            log(f"{key}: {times[key]:.2f} ms CPU time, one thread (median of "
                f"{len(samples[key])} in {ROUNDS} alternating blocks)")
    for key, fn in runners.items():
        if SINGLE_THREAD:
            continue
        else:
            times[key] = time_calls(key, fn, repeat, warmup=2, max_seconds=60).median_ms
            log(f"{key}: {times[key]:.2f} ms (median of up to {repeat})")
    accuracy = int8.metadata["quantization"]["accuracy"]
    return {
        "model": name, "fp32_compile_s": fp32_compile,
        "int8_compile_s": int8_compile, "median_ms": times,
        "int8_ops": len(int8.metadata["quantization"]["int8_ops"]),
        "fp32_ops": len(int8.metadata["quantization"]["fp32_ops"]),
        "cosine_mcc_int8_vs_fp32": cosine(outputs["mcc_int8"], outputs["mcc_fp32"]),
        "cosine_ort_qdq_vs_fp32": cosine(outputs["ort_qdq"], outputs["ort_fp32"]),
        "calibration_accuracy": accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,bert_base")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--reuse", action="store_true",
                        help="time the modules the last run left in benchmarks/onnx/")
    parser.add_argument("--single-thread", action="store_true",
                        help="one thread each, timed by CPU time (for a busy machine)")
    args = parser.parse_args()
    workdir = HERE / "onnx"
    workdir.mkdir(exist_ok=True)
    rows = [bench_model(name, args.samples, args.repeat, workdir, args.reuse)
            for name in args.models.split(",")]
    print("timing: " + ("CPU time of one thread per runtime (--single-thread)" if SINGLE_THREAD
                        else f"wall clock, {os.environ.get('TVM_NUM_THREADS')} TVM threads"))
    print("| model | int8 ops (fp32) | mcc fp32 ms | mcc int8 ms | ORT fp32 ms | ORT QDQ int8 ms "
          "| int8 speed-up vs mcc fp32 | mcc int8 / ORT QDQ | cosine int8 vs fp32 (mcc, ORT) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["median_ms"]
        print(f"| {r['model']} | {r['int8_ops']} ({r['fp32_ops']}) | {t['mcc_fp32']:.1f} "
              f"| {t['mcc_int8']:.2f} | {t['ort_fp32']:.2f} | {t['ort_qdq']:.2f} "
              f"| {t['mcc_fp32'] / t['mcc_int8']:.1f}x | {t['mcc_int8'] / t['ort_qdq']:.2f} "
              f"| {r['cosine_mcc_int8_vs_fp32']:.4f}, {r['cosine_ort_qdq_vs_fp32']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
