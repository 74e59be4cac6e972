"""Fuzz mcc's command line with damaged input; every outcome must be clean.

    .venv/bin/python benchmarks/fuzz.py --cases 320 --seed 0 --jobs 2

Builds mutated ONNX models (byte flips, truncation, protobuf field mutations: wrong
dims, bad attributes, missing initializers, huge dims, wrong types), damaged modules,
damaged tuning logs and damaged .npz feeds, runs each through ``mcc compile`` /
``mcc run`` / ``mcc info`` as a subprocess with a timeout, and classifies the outcome:

    ok           exit 0
    user_error   exit 1, exactly one 'error:' line, last on stderr, no traceback
    internal     exit 2 ('internal error: ...')
    traceback    a Python traceback on stderr
    signal       killed by a signal (segfault, abort ...)
    hang         past the timeout
    partial      a failed run left a file in the output folder, or any run left
                 an mcc temp folder in its private $TMPDIR
    other        any other exit status / shape of output

The goal: 0 internal, traceback, signal, hang, partial and other. Exit status 1 when
any case is bad; --json writes every case's outcome.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MCC = [str(ROOT / ".venv" / "bin" / "mcc")]
BAD = ("internal", "traceback", "signal", "hang", "partial", "other")


# -- base inputs --------------------------------------------------------------------------

def base_models() -> dict[str, onnx.ModelProto]:
    rng = np.random.default_rng(0)

    def init(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    conv = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
         helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn"),
         helper.make_node("Relu", ["n"], ["r"], name="relu"),
         helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                          name="pool")],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [init("w", 4, 3, 3, 3), init("b", 4), init("g", 4), init("be", 4), init("m", 4),
         numpy_helper.from_array(np.ones(4, np.float32), "v")])
    mlp = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Add", ["h", "b"], ["a"], name="add"),
         helper.make_node("Clip", ["a", "lo", "hi"], ["c"], name="clip"),
         helper.make_node("Softmax", ["c"], ["y"], axis=-1, name="softmax")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [init("w", 8, 5), init("b", 5), numpy_helper.from_array(np.float32(0), "lo"),
         numpy_helper.from_array(np.float32(6), "hi")])
    out = {}
    for graph in (conv, mlp):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        out[graph.name] = model
    return out


def small_tuning_log(dest: Path, workloads: int = 3) -> Path:
    """A valid MetaSchedule database: the first records of the shipped x86 log."""
    src = ROOT / "tuning_logs" / "llvm-x86_64"
    dest.mkdir(parents=True, exist_ok=True)
    with open(src / "database_workload.json") as f:
        lines = [next(f) for _ in range(workloads)]
    (dest / "database_workload.json").write_text("".join(lines))
    keep = []
    with open(src / "database_tuning_record.json") as f:
        for line in f:
            if json.loads(line)[0] < workloads:
                keep.append(line)
            if len(keep) >= 6:
                break
    (dest / "database_tuning_record.json").write_text("".join(keep))
    return dest


# -- mutations ------------------------------------------------------------------------------

def flip_bytes(data: bytes, rng: random.Random, n: int | None = None) -> bytes:
    data = bytearray(data)
    for _ in range(n or rng.randint(1, 64)):
        data[rng.randrange(len(data))] ^= rng.randint(1, 255)
    return bytes(data)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def _random_dim(rng):
    return rng.choice([0, -1, -7, 1, 2, 3, 1 << 20, 1 << 31, 1 << 40, 1 << 62, 17])


def mutate_proto(model: onnx.ModelProto, rng: random.Random) -> tuple[str, onnx.ModelProto]:
    """One protobuf field mutation (the model stays parseable)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    kind = rng.choice(["input_dim", "output_dim", "attr_int", "attr_ints", "attr_type",
                       "drop_init", "init_dims", "huge_input", "elem_type", "drop_node_input",
                       "rename_output", "opset", "dup_output", "init_raw", "dim_param",
                       "attr_float", "drop_attr", "op_type", "ir_version", "init_dtype"])
    if kind == "input_dim":
        dims = g.input[0].type.tensor_type.shape.dim
        d = dims[rng.randrange(len(dims))]
        d.dim_value = _random_dim(rng)
    elif kind == "output_dim":
        dims = g.output[0].type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_value = _random_dim(rng)
    elif kind == "huge_input":
        for d in g.input[0].type.tensor_type.shape.dim:
            d.dim_value = rng.choice([1 << 16, 1 << 20, 1 << 24])
    elif kind == "dim_param":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_param = rng.choice(["n", "", "x y", "\u00e9"])
    elif kind in ("attr_int", "attr_ints", "attr_type", "attr_float", "drop_attr"):
        nodes = [n for n in g.node if n.attribute]
        node = rng.choice(nodes)
        attr = rng.choice(node.attribute)
        if kind == "attr_int":
            attr.ClearField("ints")
            attr.type = onnx.AttributeProto.INT
            attr.i = rng.choice([-1, 0, 99, 1 << 40, -(1 << 40)])
        elif kind == "attr_ints":
            attr.type = onnx.AttributeProto.INTS
            del attr.ints[:]
            attr.ints.extend(rng.choice([[], [0], [-1, -1], [1 << 30] * 4, [2, 2, 2, 2, 2, 2]]))
        elif kind == "attr_float":
            attr.type = onnx.AttributeProto.FLOAT
            attr.f = rng.choice([float("nan"), float("inf"), -1.0, 1e30])
        elif kind == "attr_type":
            attr.type = rng.choice([onnx.AttributeProto.STRING, onnx.AttributeProto.TENSOR,
                                    onnx.AttributeProto.GRAPH])
        else:
            node.attribute.remove(attr)
    elif kind == "drop_init":
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == "init_dims":
        t = g.initializer[rng.randrange(len(g.initializer))]
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = _random_dim(rng)
        else:
            t.dims.append(_random_dim(rng))
    elif kind == "init_raw":
        t = g.initializer[rng.randrange(len(g.initializer))]
        t.raw_data = t.raw_data[: rng.randrange(0, max(1, len(t.raw_data)))]
    elif kind == "init_dtype":
        t = g.initializer[rng.randrange(len(g.initializer))]
        t.data_type = rng.choice([0, 2, 7, 8, 9, 16, 40, 999])
    elif kind == "elem_type":
        g.input[0].type.tensor_type.elem_type = rng.choice([0, 2, 6, 7, 8, 9, 10, 11, 16, 999])
    elif kind == "drop_node_input":
        node = rng.choice(list(g.node))
        node.input[rng.randrange(len(node.input))] = rng.choice(["", "nope"])
    elif kind == "rename_output":
        g.node[-1].output[0] = "elsewhere"
    elif kind == "dup_output":
        g.node[0].output[0] = g.node[-1].output[0]
    elif kind == "opset":
        m.opset_import[0].version = rng.choice([0, 1, 6, 99, 1 << 40])
    elif kind == "op_type":
        rng.choice(list(g.node)).op_type = rng.choice(["Nope", "", "relu", "Conv", "If"])
    elif kind == "ir_version":
        m.ir_version = rng.choice([0, 1, 99])
    return kind, m


def mutate_npz(spec_shape, rng: random.Random, path: Path) -> str:
    kind = rng.choice(["flip", "truncate", "wrong_shape", "wrong_dtype", "extra_name",
                       "missing", "object", "nan", "empty_file", "not_zip"])
    x = np.random.default_rng(rng.randrange(1 << 30)).standard_normal(spec_shape)
    x = x.astype(np.float32)
    if kind == "wrong_shape":
        np.savez(path, x=x.reshape(-1)[: max(1, x.size // 2)])
    elif kind == "wrong_dtype":
        np.savez(path, x=x.astype(rng.choice([np.float64, np.int64, np.bool_, np.float16])))
    elif kind == "extra_name":
        np.savez(path, x=x, y=x)
    elif kind == "missing":
        np.savez(path, z=x)
    elif kind == "object":
        np.savez(path, x=np.array([{"a": 1}], dtype=object))
    elif kind == "nan":
        x[...] = np.nan
        np.savez(path, x=x)
    elif kind == "empty_file":
        path.write_bytes(b"")
    elif kind == "not_zip":
        path.write_bytes(rng.randbytes(200))
    else:
        np.savez(path, x=x)
        data = path.read_bytes()
        path.write_bytes(flip_bytes(data, rng) if kind == "flip" else truncate(data, rng))
    return kind


def mutate_module(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flip64", "truncate", "zero_block", "header", "empty"])
    if kind == "flip":
        return kind, flip_bytes(data, rng, rng.randint(1, 4))
    if kind == "flip64":
        return kind, flip_bytes(data, rng, 64)
    if kind == "truncate":
        return kind, truncate(data, rng)
    if kind == "zero_block":
        at = rng.randrange(len(data))
        n = rng.randint(16, 4096)
        return kind, data[:at] + bytes(min(n, len(data) - at)) + data[at + n:]
    if kind == "header":
        return kind, flip_bytes(data[:64], rng, 4) + data[64:]
    return kind, b""


def mutate_tuning_log(src: Path, dest: Path, rng: random.Random) -> str:
    shutil.copytree(src, dest)
    kind = rng.choice(["flip_records", "flip_workloads", "truncate_records",
                       "truncate_workloads", "random_records", "drop_workloads",
                       "json_records", "json_workloads", "empty_records"])
    rec, wl = dest / "database_tuning_record.json", dest / "database_workload.json"
    if kind == "flip_records":
        rec.write_bytes(flip_bytes(rec.read_bytes(), rng))
    elif kind == "flip_workloads":
        wl.write_bytes(flip_bytes(wl.read_bytes(), rng))
    elif kind == "truncate_records":
        rec.write_bytes(truncate(rec.read_bytes(), rng))
    elif kind == "truncate_workloads":
        wl.write_bytes(truncate(wl.read_bytes(), rng))
    elif kind == "random_records":
        rec.write_bytes(rng.randbytes(rng.randint(1, 5000)))
    elif kind == "drop_workloads":
        wl.unlink()
    elif kind == "empty_records":
        rec.write_bytes(b"")
    else:
        path = rec if kind == "json_records" else wl
        lines = path.read_text().splitlines()
        i = rng.randrange(len(lines))
        value = json.loads(lines[i])
        choice = rng.choice([None, 7, -1, "x", [], {}, [1 << 40], [[], []], 1e308])
        if isinstance(value, list) and value:
            value[rng.randrange(len(value))] = choice
        else:
            value = choice
        lines[i] = json.dumps(value)
        path.write_text("\n".join(lines) + "\n")
    return kind


# -- running and classifying ----------------------------------------------------------------

def classify(proc_rc, stderr: str, out_dir: Path, expected: Path | None, tmpdir: Path) -> str:
    left = [p.name for p in tmpdir.iterdir()] if tmpdir.exists() else []
    if proc_rc is None:
        return "hang"
    if proc_rc < 0:
        return "signal"
    if "Traceback" in stderr:
        return "traceback"
    if proc_rc == 2:
        return "internal"
    files = sorted(p.name for p in out_dir.iterdir())
    if any(name.startswith("mcc-") for name in left):
        return "partial"
    if proc_rc == 0:
        extra = [f for f in files if expected is None or f != expected.name]
        return "partial" if extra else "ok"
    if proc_rc == 1:
        if files:
            return "partial"
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        if len(errors) == 1 and lines[-1] == errors[0]:
            return "user_error"
    return "other"


def run_case(case: dict, timeout: float) -> dict:
    work = Path(case["dir"])
    out_dir, tmpdir = work / "out", work / "tmp"
    out_dir.mkdir(exist_ok=True)
    tmpdir.mkdir(exist_ok=True)
    args = [a.replace("{out}", str(out_dir)) for a in case["args"]]
    expected = None
    if args[0] == "compile":
        expected = out_dir / "model.so"
    elif "--output" in args:
        expected = out_dir / "outputs.npz"
    env = dict(os.environ, TMPDIR=str(tmpdir), MCC_DEBUG="")
    env.pop("MCC_DEBUG")
    start = time.time()
    try:
        proc = subprocess.run(MCC + args, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=work, errors="replace")
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as err:
        rc, stderr = None, (err.stderr or b"").decode(errors="replace") \
            if isinstance(err.stderr, bytes) else (err.stderr or "")
    outcome = classify(rc, stderr, out_dir, expected, tmpdir)
    last = [ln for ln in stderr.splitlines() if ln.strip()][-1:] or [""]
    return dict(case, outcome=outcome, rc=rc, secs=round(time.time() - start, 1),
                last_line=last[0][:300])


def build_cases(root: Path, n: int, seed: int) -> list[dict]:
    """``n`` cases over the input kinds, reproducible from ``seed``."""
    import mcc

    rng = random.Random(seed)
    base = root / "base"
    base.mkdir(parents=True)
    models = base_models()
    for name, model in models.items():
        onnx.save(model, str(base / f"{name}.onnx"))
    module = mcc.compile(str(base / "conv.onnx"), verify=False).export(base / "conv.so")
    module_bytes = module.read_bytes()
    log = small_tuning_log(base / "log")
    np.savez(base / "good.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    weights = [("onnx_bytes", 3), ("onnx_proto", 6), ("module", 3), ("tuning_log", 2),
               ("npz", 2)]
    kinds = [k for k, w in weights for _ in range(w)]
    cases = []
    for i in range(n):
        work = root / f"case{i:04d}"
        work.mkdir()
        family = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)
        model_name = rng.choice(list(models))
        raw = models[model_name].SerializeToString()
        if family == "onnx_bytes":
            how = rng.choice(["flip", "truncate", "flip_many", "append"])
            if how == "flip":
                data = flip_bytes(raw, rng, rng.randint(1, 8))
            elif how == "flip_many":
                data = flip_bytes(raw, rng, rng.randint(20, 200))
            elif how == "truncate":
                data = truncate(raw, rng)
            else:
                data = raw + rng.randbytes(rng.randint(1, 64))
            (work / "m.onnx").write_bytes(data)
            args = ["compile", "m.onnx", "-o", "{out}/model.so"]
            detail = f"{model_name} {how}"
        elif family == "onnx_proto":
            how, model = mutate_proto(models[model_name], rng)
            (work / "m.onnx").write_bytes(model.SerializeToString())
            args = ["compile", "m.onnx", "-o", "{out}/model.so"]
            detail = f"{model_name} {how}"
        elif family == "module":
            how, data = mutate_module(module_bytes, rng)
            (work / "m.so").write_bytes(data)
            command = rng.choice(["run", "info", "run"])
            args = [command, "m.so"] + (["--output", "{out}/outputs.npz"]
                                        if command == "run" else [])
            detail = how
        elif family == "tuning_log":
            how = mutate_tuning_log(log, work / "log", rng)
            shutil.copy(base / "conv.onnx", work / "m.onnx")
            args = ["compile", "m.onnx", "-o", "{out}/model.so", "--tuning-log", "log"]
            detail = how
        else:
            how = mutate_npz((1, 3, 8, 8), rng, work / "in.npz")
            shutil.copy(module, work / "m.so")
            args = ["run", "m.so", "--inputs", "in.npz", "--output", "{out}/outputs.npz"]
            detail = how
        cases.append({"id": i, "family": family, "detail": detail, "args": args,
                      "dir": str(work)})
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--json", metavar="FILE", help="write every case's outcome here")
    parser.add_argument("--keep", action="store_true", help="keep the cases' folders")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mcc-fuzz-"))
    try:
        cases = build_cases(root, args.cases, args.seed)
        results = []
        with ThreadPoolExecutor(args.jobs) as pool:
            for result in pool.map(lambda c: run_case(c, args.timeout), cases):
                results.append(result)
                if result["outcome"] in BAD:
                    print(f"BAD {result['outcome']}: case {result['id']} {result['family']} "
                          f"{result['detail']}: {result['last_line']}", flush=True)
        counts = collections.Counter(r["outcome"] for r in results)
        by_family = collections.defaultdict(collections.Counter)
        for r in results:
            by_family[r["family"]][r["outcome"]] += 1
        print(f"{len(results)} cases (seed {args.seed}): " +
              ", ".join(f"{k} {counts.get(k, 0)}" for k in ("ok", "user_error", *BAD)))
        for family, c in sorted(by_family.items()):
            print(f"  {family:<11} " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 1 if any(counts.get(k) for k in BAD) else 0
    finally:
        if args.keep:
            print(f"cases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
