"""Check mcc's CUDA modules on a real GPU from C++, with no Python TVM on the GPU machine.

    .venv/bin/python benchmarks/gpu_check.py build [--out .gpucheck] [--target cuda-sm90]
                                                   [--models tiny_resnet,nan_ops,...]
    # copy the folder to the GPU machine (NVIDIA driver + libcudart.so.13), there:
    bash .gpucheck/run.sh OUT_DIR          # runs every module with bin/mcc_run
    # back here:
    .venv/bin/python benchmarks/gpu_check.py compare OUT_DIR [--out .gpucheck]

``build`` compiles each model below with ``--target cuda-sm90`` (no GPU needed: nvcc
compiles the kernels), and also for this machine's CPU; runs ONNX Runtime (CPU, fp32)
and the x86 mcc build on seeded inputs; writes a deploy bundle (``mcc package``: the C++
runner ``bin/mcc_run``, libtvm_runtime / libtvm_ffi / libtvm_runtime_cuda, plus
``libcudart.so.13`` where nvcc's toolkit has it), the modules, the inputs as ``.npy``,
the references (``refs.npz``, not needed on the GPU machine) and ``run.sh``.

``run.sh OUT_DIR`` runs each case with ``mcc_run --repeat 50 --warmup 5`` (each timed run
includes copying the outputs back, which waits for the GPU), then each once more under
``compute-sanitizer --tool memcheck`` where that is installed, and writes
``OUT_DIR/outputs.npz`` (key ``case/output``), ``OUT_DIR/timings.json`` and ``OUT_DIR/log.txt``.
If the prebuilt runner cannot start there (an older C library, say) it rebuilds it from
the bundled sources with cmake.

``compare`` checks the GPU outputs against the references: fp32 modules against ONNX
Runtime at rtol 1e-3 / atol 1e-4 with NaN and +-inf in the same places (nan_ops' MaxPool
and ReduceMax/Min against numpy, which keeps every NaN, as mcc does), fp16 modules
against ONNX Runtime fp32 at rtol 1e-2 / atol 1e-2 x max|value|, int8 modules against the
x86 int8 build of the same calibration (atol 2% of the largest |value|); and prints a
Markdown table with the max |error|, the median latency and the memcheck result.

Cases:
  tiny_resnet     examples/tiny_resnet.onnx, symbolic batch, run at batch 1 and 16
  nan_ops         Relu, Clip, MaxPool, ReduceMax/Min, Max/Min fed NaN and +-inf
  transformer     a pre-norm encoder block: LayerNorm, 4-head attention (MatMul,
                  Softmax), GELU (Erf) MLP, residuals; sequence 64, hidden 128
  conv_bn, residual, matmul_softmax   the models of tests/gpu (batch 4 for the last)
  tiny_resnet_int8, conv_bn_int8      --quantize int8 (dp4a kernels), calibrated on
                  16 seeded samples, vs the x86 int8 build
  tiny_resnet_fp16, transformer_fp16  --quantize fp16 (mixed precision)
  mobilenet_v2    1x3x224x224, seeded weights (benchmarks/models.py), vs ONNX Runtime
                  only (no x86 build)
  vec_nan         a float4 kernel of mcc.build.nan's compare-only max / min (which the
                  default GPU schedules do not emit for these models), run and checked
                  lane by lane by bin/vec_nan (benchmarks/gpu_vec_nan.cc)

Measured on an H200: docs/deploy.md, "Checking a CUDA module on a GPU machine".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

DEFAULT_MODELS = ("tiny_resnet", "nan_ops", "transformer", "conv_bn", "residual",
                  "matmul_softmax", "tiny_resnet_int8", "conv_bn_int8", "tiny_resnet_fp16",
                  "transformer_fp16", "mobilenet_v2")
FP32_TOL = {"rtol": 1e-3, "atol": 1e-4}
INT8_ATOL = 0.02  # times the largest |value| of the x86 int8 output
FP16_TOL = 0.01  # rtol, and atol times the largest |value| of ONNX Runtime's fp32 output
REPEAT, WARMUP = 50, 5
SANITIZER_AFTER_S = 120  # run.sh starts no memcheck run later than this


# ---------------------------------------------------------------- the models


def nan_ops_model():
    from onnx import TensorProto, helper

    from conftest import graph_model

    shape = [1, 8, 16, 16]
    f = TensorProto.FLOAT
    nodes = [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Clip", ["x", "lo", "hi"], ["clip"]),
        helper.make_node("MaxPool", ["x"], ["maxpool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ReduceMax", ["x"], ["reducemax"], axes=[3], keepdims=0),
        helper.make_node("ReduceMin", ["x"], ["reducemin"], axes=[3], keepdims=0),
        helper.make_node("Max", ["x", "y"], ["max"]),
        helper.make_node("Min", ["x", "y"], ["min"]),
    ]
    inits = [("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.5, np.float32))]
    outputs = [("relu", f, shape), ("clip", f, shape), ("maxpool", f, [1, 8, 8, 8]),
               ("reducemax", f, [1, 8, 16]), ("reducemin", f, [1, 8, 16]),
               ("max", f, shape), ("min", f, shape)]
    return graph_model(nodes, [("x", f, shape), ("y", f, shape)], outputs, inits)


def nan_ops_feed():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    y = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    flat_x, flat_y = x.reshape(-1), y.reshape(-1)
    flat_x[rng.choice(flat_x.size, 96, replace=False)] = np.nan  # every lane of a float4
    flat_y[rng.choice(flat_y.size, 96, replace=False)] = np.nan
    flat_x[rng.choice(flat_x.size, 8, replace=False)] = np.inf
    flat_x[rng.choice(flat_x.size, 8, replace=False)] = -np.inf
    x[0, 1, 2, :] = np.nan  # a whole row: ReduceMax / Min of only NaN
    return {"x": x, "y": y}


def _nan_ops_reference(feed: dict) -> dict:
    """MaxPool / ReduceMax / ReduceMin with a NaN wherever one is reduced, as numpy and mcc's
    x86 build give (tests/cpu/test_nan_propagation.py): ONNX Runtime's CPU kernels skip a
    NaN there (a running ``x > m``), so they are no reference for these three."""
    x = feed["x"]
    return {"maxpool": x.reshape(1, 8, 8, 2, 8, 2).max(axis=(3, 5)),
            "reducemax": x.max(axis=3), "reducemin": x.min(axis=3)}


def _transformer_model(seq=64, hidden=128, heads=4, ffn=512):
    from onnx import TensorProto, helper

    from conftest import graph_model

    rng = np.random.default_rng(3)
    d = hidden // heads

    def w(*shape, scale=None):
        return (rng.standard_normal(shape) * (scale or 1 / np.sqrt(shape[0]))).astype(
            np.float32)

    inits = [("ln1_g", 1 + 0.1 * w(hidden, scale=1)), ("ln1_b", 0.1 * w(hidden, scale=1)),
             ("ln2_g", 1 + 0.1 * w(hidden, scale=1)), ("ln2_b", 0.1 * w(hidden, scale=1)),
             ("wq", w(hidden, hidden)), ("wk", w(hidden, hidden)), ("wv", w(hidden, hidden)),
             ("wo", w(hidden, hidden)), ("bo", 0.1 * w(hidden, scale=1)),
             ("w1", w(hidden, ffn)), ("b1", 0.1 * w(ffn, scale=1)),
             ("w2", w(ffn, hidden)), ("b2", 0.1 * w(hidden, scale=1)),
             ("heads_shape", np.array([1, seq, heads, d], np.int64)),
             ("merge_shape", np.array([1, seq, hidden], np.int64)),
             ("scale", np.array(1 / np.sqrt(d), np.float32)),
             ("half", np.array(0.5, np.float32)), ("one", np.array(1.0, np.float32)),
             ("inv_sqrt2", np.array(1 / np.sqrt(2), np.float32))]
    n = helper.make_node
    nodes = [n("LayerNormalization", ["x", "ln1_g", "ln1_b"], ["h"], axis=-1, epsilon=1e-5)]
    for name in ("q", "k", "v"):
        nodes += [n("MatMul", ["h", f"w{name}"], [f"{name}0"]),
                  n("Reshape", [f"{name}0", "heads_shape"], [f"{name}1"]),
                  n("Transpose", [f"{name}1"], [f"{name}h"],
                    perm=[0, 2, 3, 1] if name == "k" else [0, 2, 1, 3])]
    nodes += [n("MatMul", ["qh", "kh"], ["s0"]), n("Mul", ["s0", "scale"], ["s1"]),
              n("Softmax", ["s1"], ["p"], axis=-1), n("MatMul", ["p", "vh"], ["a0"]),
              n("Transpose", ["a0"], ["a1"], perm=[0, 2, 1, 3]),
              n("Reshape", ["a1", "merge_shape"], ["a2"]),
              n("MatMul", ["a2", "wo"], ["o0"]), n("Add", ["o0", "bo"], ["o1"]),
              n("Add", ["x", "o1"], ["r1"]),
              n("LayerNormalization", ["r1", "ln2_g", "ln2_b"], ["h2"], axis=-1, epsilon=1e-5),
              n("MatMul", ["h2", "w1"], ["f0"]), n("Add", ["f0", "b1"], ["f1"]),
              n("Mul", ["f1", "inv_sqrt2"], ["g0"]), n("Erf", ["g0"], ["g1"]),
              n("Add", ["g1", "one"], ["g2"]), n("Mul", ["f1", "g2"], ["g3"]),
              n("Mul", ["g3", "half"], ["g4"]),
              n("MatMul", ["g4", "w2"], ["f2"]), n("Add", ["f2", "b2"], ["f3"]),
              n("Add", ["r1", "f3"], ["y"])]
    f = TensorProto.FLOAT
    return graph_model(nodes, [("x", f, [1, seq, hidden])], [("y", f, [1, seq, hidden])],
                       inits)


def _seeded(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _calibration(path: Path, name: str, shape) -> Path:
    np.savez(path, **{name: _seeded((16, *shape), 2)})
    return path


def cases(models, workdir: Path) -> list[dict]:
    """For each model: how to compile it, and the feeds it runs on (one case each)."""
    from conftest import conv_bn_model, matmul_softmax_model, residual_model

    tiny = str(ROOT / "examples" / "tiny_resnet.onnx")
    table = {
        "tiny_resnet": lambda: dict(model=tiny, feeds={
            "b1": {"image": _seeded((1, 3, 32, 32), 7)},
            "b16": {"image": _seeded((16, 3, 32, 32), 8)}}),
        "nan_ops": lambda: dict(model=nan_ops_model(), feeds={"": nan_ops_feed()},
                                reference=_nan_ops_reference),
        "transformer": lambda: dict(model=_transformer_model(),
                                    feeds={"": {"x": _seeded((1, 64, 128), 9)}}),
        "conv_bn": lambda: dict(model=conv_bn_model(),
                                feeds={"": {"x": _seeded((1, 3, 12, 12), 1)}}),
        "residual": lambda: dict(model=residual_model(),
                                 feeds={"": {"x": _seeded((1, 4, 10, 10), 5)}}),
        "matmul_softmax": lambda: dict(model=matmul_softmax_model(),
                                       feeds={"b4": {"x": _seeded((4, 16), 5)}}),
        "tiny_resnet_int8": lambda: dict(
            model=tiny, int8=True, input_shapes={"image": (1, 3, 32, 32)},
            calibration=_calibration(workdir / "cal_tiny.npz", "image", (1, 3, 32, 32)),
            feeds={"": {"image": _seeded((1, 3, 32, 32), 6)}}),
        "conv_bn_int8": lambda: dict(
            model=conv_bn_model(), int8=True,
            calibration=_calibration(workdir / "cal_conv_bn.npz", "x", (1, 3, 12, 12)),
            feeds={"": {"x": _seeded((1, 3, 12, 12), 6)}}),
        "tiny_resnet_fp16": lambda: dict(model=tiny, fp16=True,
                                         input_shapes={"image": (1, 3, 32, 32)},
                                         feeds={"": {"image": _seeded((1, 3, 32, 32), 7)}}),
        "transformer_fp16": lambda: dict(model=_transformer_model(), fp16=True,
                                         feeds={"": {"x": _seeded((1, 64, 128), 9)}}),
        "mobilenet_v2": lambda: dict(model=str(_benchmark_onnx("mobilenet_v2")), x86=False,
                                     feeds={"": {"input": _seeded((1, 3, 224, 224), 4)}}),
    }
    unknown = [m for m in models if m not in table]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {', '.join(unknown)}; "
                         f"known: {', '.join(table)}")
    return [dict(name=m, **table[m]()) for m in models]


def _benchmark_onnx(name: str) -> Path:
    from models import export_onnx

    return export_onnx(name, HERE / "onnx")


# ---------------------------------------------------------------- build


def _onnx_reference(model, feed: dict) -> list[np.ndarray]:
    import onnx
    import onnxruntime as ort

    data = model if isinstance(model, str) else onnx.ModelProto.SerializeToString(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def build(out: Path, target: str, models) -> None:
    import mcc

    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "modules").mkdir(parents=True)
    (out / "inputs").mkdir()
    work = out.parent / f".{out.name}-work"
    work.mkdir(exist_ok=True)
    refs, plan = {}, []
    for case in cases(models, work):
        name = case["name"]
        options = dict(quantize="int8", calibration=str(case["calibration"])) \
            if case.get("int8") else {}
        shapes = case.get("input_shapes")
        print(f"[gpu_check] {name}: compiling for {target} and for this CPU", flush=True)
        gpu = mcc.compile(case["model"], target=target, input_shapes=shapes, verify=False,
                          **options, **({"quantize": "fp16"} if case.get("fp16") else {}))
        gpu.export(out / "modules" / f"{name}.so")
        outputs = [t.name for t in gpu.outputs]
        cpu = mcc.compile(case["model"], input_shapes=shapes, **options) \
            if case.get("x86", True) else None  # fp16: fp32 here
        for suffix, feed in case["feeds"].items():
            key = f"{name}-{suffix}" if suffix else name
            (out / "inputs" / key).mkdir()
            args = []
            for input_name, value in feed.items():
                np.save(out / "inputs" / key / f"{input_name}.npy", value)
                args.append(f"{input_name}=inputs/{key}/{input_name}.npy")
            for output, value in zip(outputs, cpu.run(feed).values() if cpu else ()):
                refs[f"{key}/{output}/x86"] = value
            reference = {}
            if not case.get("int8"):
                numpy_refs = case["reference"](feed) if "reference" in case else {}
                for output, value in zip(outputs, _onnx_reference(case["model"], feed)):
                    refs[f"{key}/{output}/reference"] = numpy_refs.get(output, value)
                    reference[output] = "numpy" if output in numpy_refs else "ONNX Runtime"
            plan.append(dict(case=key, module=f"modules/{name}.so", inputs=args,
                             outputs=outputs, reference=reference,
                             int8=bool(case.get("int8")), fp16=bool(case.get("fp16"))))
    np.savez(out / "refs.npz", **refs)
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    _bundle_runtime(out, target)
    _vector_nan_kernel(out, target)
    (out / "run.sh").write_text(RUN_SH)
    shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[gpu_check] {len(plan)} cases in {out} ({size / 2**20:.1f} MiB)")


def _bundle_runtime(out: Path, target: str) -> None:
    """bin/mcc_run and lib/ from `mcc package` of one module; the runner's sources and
    tvm_ffi's headers (to rebuild it there); libcudart.so.13 if nvcc's toolkit has it."""
    import tvm_ffi

    import mcc
    from mcc.build.toolchain import require_tool
    from mcc.cpp import SOURCE_DIR

    first = next((out / "modules").glob("*.so"))
    bundle = mcc.bundle(first, out / ".bundle")
    shutil.move(bundle / "bin", out / "bin")
    shutil.move(bundle / "lib", out / "lib")
    shutil.rmtree(bundle)
    nvcc_home = Path(require_tool("nvcc", "finding libcudart")).resolve().parent.parent
    for cudart in [nvcc_home / "lib64" / "libcudart.so.13",
                   *sorted(Path("/usr/local").glob("cuda*/lib64/libcudart.so.13"))]:
        if cudart.is_file():
            shutil.copyfile(cudart, out / "lib" / "libcudart.so.13")
            break
    shutil.copytree(SOURCE_DIR, out / "src" / "cpp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    shutil.copytree(Path(tvm_ffi.__file__).parent / "include", out / "src" / "ffi" / "include")


def vector_nan_library(arch: str, n: int = 4096):
    """max / min of two float32[n] as float4 (mcc.build.nan's vector form for CUDA, which
    mcc's default GPU schedules do not emit for whole models), built with mcc's TIR
    pipeline for ``arch`` (``sm_90``): an executable whose ``main(x, y, zmax, zmin)`` runs
    on a CUDA device."""
    import tvm
    from tvm import te
    from tvm.s_tir import Schedule

    from mcc.build import nan

    x = te.placeholder((n,), "float32", name="x")
    y = te.placeholder((n,), "float32", name="y")
    zmax = te.compute((n,), lambda i: te.max(x[i], y[i]), name="zmax")
    zmin = te.compute((n,), lambda i: te.min(x[i], y[i]), name="zmin")
    sch = Schedule(te.create_prim_func([x, y, zmax, zmin]))
    for block in ("zmax", "zmin"):
        (loop,) = sch.get_loops(sch.get_sblock(block))
        bx, tx, lanes = sch.split(loop, [None, 128, 4])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        sch.vectorize(lanes)
    target = tvm.target.Target({"kind": "cuda", "arch": arch, "host": {"kind": "llvm"}})
    from mcc.build.cuda import nvcc_for

    with nvcc_for(target):
        return tvm.compile(sch.mod, target=target, tir_pipeline=nan.register())


def vector_nan_inputs(n: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """x, y as benchmarks/gpu_vec_nan.cc makes them: NaN in x, in y, in both, and +-inf."""
    i = np.arange(n)
    x = (np.sin(np.float32(0.37) * i.astype(np.float32)) * 3).astype(np.float32)
    y = (np.cos(np.float32(0.11) * i.astype(np.float32)) * 3).astype(np.float32)
    x[i % 7 == 0] = np.nan
    y[i % 5 == 0] = np.nan
    x[i % 11 == 0] = np.where(i[i % 11 == 0] % 2 == 1, np.inf, -np.inf)
    y[i % 13 == 0] = np.where(i[i % 13 == 0] % 3 != 0, np.inf, -np.inf)
    return x, y


def _vector_nan_kernel(out: Path, target: str) -> None:
    """modules/vec_nan.so (:func:`vector_nan_library`) and bin/vec_nan
    (benchmarks/gpu_vec_nan.cc), which runs it on GPU 0 and checks each lane."""
    import subprocess

    import tvm_ffi

    from mcc.build.cuda import device_code_packer
    from mcc.build.toolchain import require_tool
    from mcc.targets import resolve_target

    preset = resolve_target(target)
    lib = vector_nan_library(preset.cuda_arch)
    lib.export_library(str(out / "modules" / "vec_nan.so"),
                       fpack_imports=device_code_packer(preset))
    shutil.copyfile(HERE / "gpu_vec_nan.cc", out / "src" / "gpu_vec_nan.cc")
    ffi = Path(tvm_ffi.__file__).parent
    subprocess.run([require_tool("g++", "building vec_nan"), "-std=c++17", "-O2",
                    str(HERE / "gpu_vec_nan.cc"), f"-I{ffi / 'include'}", f"-L{out / 'lib'}",
                    "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed",
                    "-ldl", "-Wl,-rpath,$ORIGIN/../lib", "-o", str(out / "bin" / "vec_nan")],
                   check=True)


RUN_SH = r"""#!/usr/bin/env bash
# Written by benchmarks/gpu_check.py: run every mcc CUDA module of plan.json with the C++
# runner on GPU 0, then once more each under compute-sanitizer (memcheck) where it is
# installed.  bash run.sh [OUT_DIR]   (default: $OUT, else ./gpu-out)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:-${OUT:-$HERE/gpu-out}}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
cd "$HERE"
DRIVER=/usr/local/nvidia/lib64:/usr/local/nvidia/lib:/usr/local/cuda/lib64
export LD_LIBRARY_PATH="$HERE/lib:$DRIVER${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT_DIR/log.txt") 2>&1
echo "== gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"
RUNNER=bin/mcc_run VEC=bin/vec_nan
if ! "$RUNNER" --help >/dev/null 2>&1; then
  echo "== prebuilt mcc_run cannot start here: $("$RUNNER" --help 2>&1 | head -1); rebuilding"
  B=/tmp/mcc-build
  cmake -S src/cpp -B $B -DCMAKE_BUILD_TYPE=Release -DTVM_FFI_ROOT="$HERE/src/ffi" \
    -DTVM_FFI_LIB_DIR="$HERE/lib" -DTVM_RUNTIME_DIR="$HERE/lib" >/tmp/mcc-cmake.log 2>&1 &&
    cmake --build $B -j 8 >>/tmp/mcc-cmake.log 2>&1 || { tail -20 /tmp/mcc-cmake.log; exit 1; }
  mkdir -p /tmp/mcc-bin && cp $B/mcc_run /tmp/mcc-bin/ && RUNNER=/tmp/mcc-bin/mcc_run
  g++ -std=c++17 -O2 src/gpu_vec_nan.cc -Isrc/ffi/include -Llib -Wl,--no-as-needed \
    -ltvm_runtime -ltvm_ffi -Wl,--as-needed -ldl -o /tmp/mcc-bin/vec_nan && VEC=/tmp/mcc-bin/vec_nan
fi
python3 - "$RUNNER" "$VEC" "$OUT_DIR" <<'EOF'
import json, os, shutil, subprocess, sys, time
import numpy as np
runner, vec, out_dir = sys.argv[1:4]
plan = json.load(open("plan.json"))
outputs, timings, start = {}, {}, time.time()
def run(cmd, timeout):
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip(), time.time() - t
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout}s", time.time() - t
def command(case):
    if case["case"] == "vec_nan":
        return [vec, "lib", "modules/vec_nan.so"]
    return [runner, case["module"]] + [a for i in case["inputs"] for a in ("-i", i)]
for case in plan:
    raw = f"/tmp/gpucheck-raw/{case['case']}"
    if time.time() - start > 200:
        timings[case["case"]] = {"rc": None, "text": "not run: out of time"}
        continue
    rc, text, wall = run(command(case) + ["-o", raw, "--repeat", "@REPEAT@",
                                          "--warmup", "@WARMUP@"], 60)
    print(f"== {case['case']}: exit {rc} in {wall:.1f}s\n{text}")
    entry = {"rc": rc, "wall_s": round(wall, 2), "text": text[-1500:]}
    for line in text.splitlines():
        if line.startswith("ran "):
            entry["median_ms"] = float(line.split("median ")[1].split(" ms")[0])
            entry["min_ms"] = float(line.split("min ")[1].split(" ms")[0])
    timings[case["case"]] = entry
    if rc == 0:
        for name in case["outputs"]:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            outputs[f"{case['case']}/{name}"] = np.load(f"{raw}/{safe}.npy")
rc, text, wall = run(command({"case": "vec_nan"}), 60)
print(f"== vec_nan: exit {rc} in {wall:.1f}s\n{text}")
timings["vec_nan"] = {"rc": rc, "wall_s": round(wall, 2), "text": text[-1500:]}
np.savez(f"{out_dir}/outputs.npz", **outputs)
sanitizer = shutil.which("compute-sanitizer") or next(
    (p for p in ("/usr/local/cuda/bin/compute-sanitizer",) if os.path.exists(p)), None)
checks = {}
for case in plan + [{"case": "vec_nan"}]:
    if sanitizer is None or time.time() - start > @DEADLINE@:
        checks[case["case"]] = {"rc": None, "text": "not checked (no compute-sanitizer, "
                                "or out of time)"}
        continue
    rc, text, wall = run([sanitizer, "--tool", "memcheck", "--error-exitcode", "3",
                          "--print-limit", "5"] + command(case), 60)
    checks[case["case"]] = {"rc": rc, "wall_s": round(wall, 1), "text": text[-1200:]}
    print(f"== memcheck {case['case']}: exit {rc} in {wall:.1f}s")
    if rc != 0:
        print(text[-1200:])
json.dump({"runs": timings, "memcheck": checks}, open(f"{out_dir}/timings.json", "w"),
          indent=1)
ok = sum(t["rc"] == 0 for t in timings.values())
clean = sum(c["rc"] == 0 for c in checks.values())
print(f"== {ok}/{len(timings)} ran; memcheck clean {clean}/{len(checks)}; "
      f"outputs.npz, timings.json, log.txt in {out_dir}")
EOF
""".replace("@REPEAT@", str(REPEAT)).replace("@WARMUP@", str(WARMUP)) \
    .replace("@DEADLINE@", str(SANITIZER_AFTER_S))


# ---------------------------------------------------------------- compare


def compare(results: Path, bundle: Path) -> int:
    for need in (bundle / "refs.npz", bundle / "plan.json", results / "outputs.npz",
                 results / "timings.json"):
        if not need.is_file():
            raise SystemExit(f"error: {need} not found (compare RESULTS --out BUILD_DIR: the "
                             "folder run.sh wrote, and the one `build` wrote)")
    refs = np.load(bundle / "refs.npz")
    plan = json.loads((bundle / "plan.json").read_text())
    got = np.load(results / "outputs.npz")
    report = json.loads((results / "timings.json").read_text())
    runs, memcheck = report["runs"], report.get("memcheck", {})
    rows, failed = [], 0
    for case in plan + [{"case": "vec_nan"}]:
        key, timing = case["case"], runs.get(case["case"], {})
        check = memcheck.get(key, {}).get("rc")
        clean = {0: "clean", None: "not run"}.get(check, f"ERRORS (exit {check})")
        failed += check not in (0, None)
        if timing.get("rc") != 0:
            failed += 1
            why = (timing.get("text") or "no result").strip().splitlines() or ["?"]
            rows.append(f"| {key} | FAILED: {why[-1][:160]} | | | {clean} |")
            continue
        if key == "vec_nan":
            rows.append(f"| {key} | ok: {timing['text'].splitlines()[-1]} | | | {clean} |")
            continue
        worst, ok = 0.0, True
        for output in case["outputs"]:
            value = got[f"{key}/{output}"]
            if case["int8"]:
                x86 = refs[f"{key}/{output}/x86"]
                worst = max(worst, _max_error(value, x86))
                ok &= _close(value, x86, rtol=0, atol=INT8_ATOL * _finite_absmax(x86))
                continue
            ort = refs[f"{key}/{output}/reference"]
            worst = max(worst, _max_error(value, ort))
            if case.get("fp16"):
                ok &= _close(value, ort, rtol=FP16_TOL, atol=FP16_TOL * _finite_absmax(ort))
            else:
                ok &= _close(value, ort, **FP32_TOL)
        failed += not ok
        reference = "x86 int8 build" if case["int8"] else \
            " + ".join(sorted(set(case["reference"].values()))) + " fp32"
        rows.append(f"| {key} | {'ok' if ok else 'MISMATCH'}: max abs error {worst:.2e} vs "
                    f"{reference} | {timing.get('median_ms', float('nan')):.3f} | "
                    f"{timing.get('min_ms', float('nan')):.3f} | {clean} |")
    print(f"| case | result | median ms ({REPEAT} runs) | min ms | memcheck |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\ntolerances: fp32 rtol {FP32_TOL['rtol']:g} / atol {FP32_TOL['atol']:g} vs ONNX "
          f"Runtime (NaN / inf in the same places); fp16 rtol {FP16_TOL:g} / atol {FP16_TOL:g} "
          f"x max|ONNX Runtime|; int8 atol {INT8_ATOL:g} x max|x86 int8|")
    print(f"{'all ok' if not failed else f'{failed} problem(s)'}")
    return 1 if failed else 0


def _max_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over the places where both are finite; inf if NaN / inf places differ."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    same = (np.isnan(a) == np.isnan(b)) & (np.isposinf(a) == np.isposinf(b)) & \
        (np.isneginf(a) == np.isneginf(b))
    if not same.all():
        return float("inf")
    finite = np.isfinite(a)
    return float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0


def _finite_absmax(a: np.ndarray) -> float:
    finite = np.isfinite(a)
    return float(np.abs(a[finite]).max()) if finite.any() else 0.0


def _close(a, b, rtol, atol) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the modules and write the folder for the GPU")
    b.add_argument("--out", default=str(ROOT / ".gpucheck"))
    b.add_argument("--target", default="cuda-sm90")
    b.add_argument("--models", default=",".join(DEFAULT_MODELS))
    c = sub.add_parser("compare", help="check a GPU run's outputs against the references")
    c.add_argument("results", help="the folder run.sh wrote (outputs.npz, timings.json)")
    c.add_argument("--out", default=str(ROOT / ".gpucheck"), help="the folder of `build`")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(Path(args.out), args.target, [m for m in args.models.split(",") if m])
        return 0
    return compare(Path(args.results), Path(args.out))


if __name__ == "__main__":
    raise SystemExit(main())
