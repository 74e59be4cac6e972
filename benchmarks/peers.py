"""Each engine's best mode on this CPU: mcc (fp32, bf16, int8) against ONNX Runtime (fp32,
QDQ int8) and OpenVINO (f32, its default bf16, NNCF int8), in one process.

    .venv/bin/python benchmarks/peers.py [--models resnet50,mobilenet_v2,minilm,ppocr_v4_rec]
                                         [--samples 8] [--repeat 20] [--min-cosine 0.999]
                                         [--single-thread] [--reuse] [--json peers.json]

Models are names of benchmarks/models.py (``minilm`` as in benchmarks/bf16.py) or of the
real-model corpus (benchmarks/corpus.py; its seeded feeds). Calibration for every int8
mode (mcc, ONNX Runtime ``quantize_static`` QDQ, NNCF ``nncf.quantize`` on the OpenVINO
model) uses the same ``--samples`` seeded inputs; all outputs are compared with ONNX
Runtime fp32 by cosine on a separate input. Timing alternates between all runners in
blocks; the median per runner is reported as a ratio to ONNX Runtime fp32. An engine's
"best" is its fastest mode whose cosine reaches ``--min-cosine``: the same accuracy bar for
every engine.

OpenVINO and NNCF are benchmark-only peers, never dependencies of mcc: they are loaded
from ``<corpus cache>/openvino`` and ``<corpus cache>/nncf`` (``pip install --target``,
see docs/BENCHMARKS.md); without them their columns are empty.

``--single-thread``: one thread per runtime, each call timed by this process's CPU time
(robust on a shared machine, as in benchmarks/bf16.py and int8.py).
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

import corpus  # noqa: E402
from bf16 import _register_minilm  # noqa: E402
from int8 import ort_qdq  # noqa: E402
from models import MODELS, export_onnx  # noqa: E402

import mcc  # noqa: E402
from mcc.frontends import import_model  # noqa: E402
from mcc.runtime.tensors import random_inputs  # noqa: E402
from mcc.verify.compare import cosine  # noqa: E402

ROUNDS = 5
ENGINES = {"mcc": ("mcc_fp32", "mcc_bf16", "mcc_int8"),
           "ort": ("ort_fp32", "ort_qdq"),
           "ov": ("ov_f32", "ov_default", "ov_nncf")}
TRANSFORMERS = {"minilm", "bert_base"}  # NNCF's recommended model_type for these


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_and_feeds(name: str, workdir: Path, count: int):
    """(onnx path, calibration samples, timing feed) of a benchmark or corpus model."""
    entries = {e["name"]: e for e in corpus.models()}
    if name in entries:
        entry = entries[name]
        samples = [corpus.make_feed(entry, seed=100 + i) for i in range(count)]
        return corpus.model_path(entry), samples, corpus.make_feed(entry, seed=7)
    if name not in MODELS:
        raise SystemExit(f"peers.py: unknown model {name!r} (benchmarks/models.py or corpus)")
    path = export_onnx(name, workdir)
    inputs = import_model(str(path)).inputs
    samples = [random_inputs(inputs, seed=100 + i) for i in range(count)]
    return path, samples, random_inputs(inputs, seed=7)


def mcc_runners(name, path, samples, feed, workdir: Path, reuse: bool) -> dict:
    data = workdir / f"{name}_peers_calibration.npz"
    np.savez(data, **{k: np.stack([s[k] for s in samples]) for k in samples[0]})
    modes = {"mcc_fp32": {}, "mcc_bf16": {"precision": "bf16"},
             "mcc_int8": {"precision": "int8", "calibration": str(data)}}
    runners = {}
    for key, options in modes.items():
        so = workdir / f"{name}_{key}.so"
        if not (reuse and so.exists()):
            start = time.perf_counter()
            try:
                shapes = {k: v.shape for k, v in feed.items()}  # the corpus's fixed shapes
                mcc.compile(str(path), input_shapes=shapes, verify=False, **options).export(so)
            except mcc.MccError as err:  # e.g. bf16 on a CPU without AVX512-BF16
                log(f"{key}: not built: {err}")
                continue
            log(f"{key}: compiled in {time.perf_counter() - start:.0f} s")
        module = mcc.load(so)
        run = module.runner({t.name: feed[t.name] for t in module.inputs})
        runners[key] = lambda run=run: list(run().values())
    return runners


def ort_runners(name, path, samples, feed, workdir: Path, reuse: bool) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if SINGLE_THREAD:
        options.intra_op_num_threads = options.inter_op_num_threads = 1

    def runner(model):
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        own = {i.name: feed[i.name] for i in session.get_inputs()}
        return lambda: session.run(None, own)

    runners = {"ort_fp32": runner(path)}
    qdq = workdir / f"{name}_peers_qdq.onnx"
    try:
        if not (reuse and qdq.exists()):
            ort_qdq(Path(path), samples, qdq)
        runners["ort_qdq"] = runner(qdq)
    except Exception as err:  # noqa: BLE001 - a peer's failure is an empty cell, not a crash
        log(f"ort_qdq: not built: {corpus.one_line(err)}")
    return runners


def ov_runners(name, path, samples, feed) -> dict:
    ov = corpus.openvino_module()
    if ov is None:
        log("OpenVINO not installed: its columns stay empty")
        return {}
    core = ov.Core()

    def read():
        model = core.read_model(str(path))
        model.reshape({port: ov.PartialShape(list(feed[port.get_any_name()].shape))
                       for port in model.inputs})
        return model

    def runner(model, config):
        if SINGLE_THREAD:
            config = dict(config, INFERENCE_NUM_THREADS=1)
        request = core.compile_model(model, "CPU", dict(config, PERFORMANCE_HINT="LATENCY")
                                     ).create_infer_request()
        ov_feed = {port.get_any_name(): feed[port.get_any_name()] for port in model.inputs}

        def run():
            request.infer(ov_feed)
            return [request.get_output_tensor(i).data.copy()
                    for i in range(len(model.outputs))]
        return run

    runners = {"ov_f32": runner(read(), {"INFERENCE_PRECISION_HINT": "f32"}),
               "ov_default": runner(read(), {})}
    nncf = _nncf()
    if nncf is None:
        log("NNCF not installed: no OpenVINO int8 column")
        return runners
    model = read()
    names = [port.get_any_name() for port in model.inputs]
    dataset = nncf.Dataset(samples, lambda s: {n: s[n] for n in names})
    extra = {"model_type": nncf.ModelType.TRANSFORMER} if name in TRANSFORMERS else {}
    try:
        quantized = nncf.quantize(model, dataset, subset_size=len(samples), **extra)
        runners["ov_nncf"] = runner(quantized, {})
    except Exception as err:  # noqa: BLE001 - as for ort_qdq
        log(f"ov_nncf: not built: {corpus.one_line(err)}")
    return runners


def _nncf():
    site = corpus.CACHE / "nncf"
    if not site.exists():
        return None
    if str(site) not in sys.path:
        sys.path.append(str(site))  # after the venv: its numpy and friends win
    try:
        import nncf

        return nncf
    except Exception as err:  # noqa: BLE001 - a peer that fails to load is a missing column
        log(f"NNCF failed to load: {err}")
        return None


def time_blocks(runners: dict, repeat: int) -> dict[str, float]:
    clock = time.process_time if SINGLE_THREAD else time.perf_counter
    samples = {key: [] for key in runners}
    for _ in range(ROUNDS):
        for key, fn in runners.items():
            for _ in range(max(1, repeat // ROUNDS)):
                start = clock()
                fn()
                samples[key].append((clock() - start) * 1e3)
    return {k: float(np.median(v)) for k, v in samples.items()}


def bench_model(name: str, count: int, repeat: int, workdir: Path, reuse: bool) -> dict:
    log(f"== {name}")
    path, samples, feed = model_and_feeds(name, workdir, count)
    runners = {**mcc_runners(name, path, samples, feed, workdir, reuse),
               **ort_runners(name, path, samples, feed, workdir, reuse),
               **ov_runners(name, path, samples, feed)}
    reference = runners["ort_fp32"]()[0]
    cosines = {key: cosine(np.asarray(fn()[0], np.float32), reference)
               for key, fn in runners.items()}
    for fn in runners.values():  # warm-up
        fn()
    times = time_blocks(runners, repeat)
    for key in runners:
        log(f"{key}: {times[key]:.2f} ms, cosine {cosines[key]:.6f}")
    return {"model": name, "median_ms": times, "cosine": cosines}


def best(row: dict, engine: str, min_cosine: float) -> str | None:
    """The engine's fastest mode that is accurate enough."""
    ok = [k for k in ENGINES[engine] if k in row["median_ms"] and row["cosine"][k] >= min_cosine]
    return min(ok, key=row["median_ms"].get, default=None)


def table(rows: list[dict], min_cosine: float) -> list[str]:
    keys = [k for modes in ENGINES.values() for k in modes]
    out = ["| model | " + " | ".join(keys) + " | best: mcc / ort / ov |",
           "|---|" + "---|" * (len(keys) + 1)]
    for row in rows:
        ms, cos, base = row["median_ms"], row["cosine"], row["median_ms"]["ort_fp32"]
        cells = [f"{ms[k] / base:.2f} ({cos[k]:.5f})" if k in ms else "-" for k in keys]
        bests = []
        for engine in ENGINES:
            key = best(row, engine, min_cosine)
            bests.append(f"{ms[key] / base:.2f} {key.split('_', 1)[1]}" if key else "-")
        out.append(f"| {row['model']} | " + " | ".join(cells) + " | " + " / ".join(bests) + " |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,mobilenet_v2,minilm,ppocr_v4_rec")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--min-cosine", type=float, default=0.999)
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
        rows.append(bench_model(name, args.samples, args.repeat, workdir, args.reuse))
        if args.json:  # after each model: an interrupted run keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))
        print("\n".join(table(rows[-1:], args.min_cosine)), flush=True)
    print("timing: " + ("CPU time, one thread per runtime (--single-thread)" if SINGLE_THREAD
                        else "wall clock, default threads") + "; each cell: latency / ORT "
          f"fp32 (cosine vs ORT fp32); best: fastest mode with cosine >= {args.min_cosine}")
    print("\n".join(table(rows, args.min_cosine)))


if __name__ == "__main__":
    main()
