"""ARM and CUDA deployment on the benchmark networks: built, packaged, run, checked.

    .venv/bin/python benchmarks/deploy.py [--models mobilenet_v2,resnet18] [--skip-arm]
                                          [--skip-cuda] [--json results.json]

For each network (exported to ONNX, cached in benchmarks/onnx/):
  rpi4       `mcc compile --target rpi4`, `mcc package`, then the bundle's C++ runner
             under qemu-aarch64 on seeded inputs; max |error| against ONNX Runtime (x86).
             The qemu latency is emulation, not a Raspberry Pi: it only shows the run is real.
  cuda-sm90  `mcc compile --target cuda-sm90` without a GPU; the fatbin's size and archs
             (SASS + PTX). Where this machine has a GPU, `cuda` is also run vs ONNX Runtime.
Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import export_onnx  # noqa: E402

import mcc  # noqa: E402

QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]


def arm_row(name: str, onnx_path: Path, workdir: Path) -> dict:
    import onnxruntime as ort

    start = time.perf_counter()
    # verify=False: this script runs the bundle under qemu and compares with ORT itself
    compiled = mcc.compile(str(onnx_path), target="rpi4", verify=False)
    compiled.export(workdir / f"{name}.so")
    build_s = time.perf_counter() - start
    bundle = mcc.bundle(workdir / f"{name}.so", workdir / f"{name}-rpi4")
    feed = mcc.runtime.tensors.random_inputs(compiled.inputs, seed=0)
    args = []
    for key, value in feed.items():
        np.save(workdir / f"{key}.npy", value)
        args += ["-i", f"{key}={workdir / key}.npy"]
    start = time.perf_counter()
    proc = subprocess.run(QEMU + ["./bin/mcc_run", f"{name}.so", *args, "-o", str(workdir / "out"),
                                  "--repeat", "3"], cwd=bundle, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: runner failed under qemu: {proc.stderr.strip()}")
    qemu_s = time.perf_counter() - start
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ran "))
    median_ms = float(line.split("median ")[1].split(" ms")[0])
    expected = ort.InferenceSession(str(onnx_path)).run(None, feed)
    errors = [float(np.abs(np.load(workdir / "out" / f"{spec.name}.npy") - ref).max())
              for spec, ref in zip(compiled.outputs, expected)]
    return {"model": name, "target": "rpi4", "build_s": round(build_s, 1),
            "so_mb": round((workdir / f"{name}.so").stat().st_size / 1e6, 1),
            "qemu_median_ms": median_ms, "qemu_wall_s": round(qemu_s, 1),
            "max_abs_err_vs_ort": max(errors)}


def cuda_row(name: str, onnx_path: Path, workdir: Path) -> dict:
    from mcc.build.cuda import device_code_info

    start = time.perf_counter()
    compiled = mcc.compile(str(onnx_path), target="cuda-sm90")
    compiled.export(workdir / f"{name}-cuda.so")
    build_s = time.perf_counter() - start
    fatbins = device_code_info(workdir / f"{name}-cuda.so")
    return {"model": name, "target": "cuda-sm90", "build_s": round(build_s, 1),
            "so_mb": round((workdir / f"{name}-cuda.so").stat().st_size / 1e6, 1),
            "kernels": compiled.report["schedule"]["tasks"],
            "fatbin_kb": round(sum(f["bytes"] for f in fatbins) / 1e3, 1),
            "sass": sorted({a for f in fatbins for a in f["sass"]}),
            "ptx": sorted({a for f in fatbins for a in f["ptx"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,resnet18")
    parser.add_argument("--skip-arm", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcc-deploy-") as tmp:
        for name in args.models.split(","):
            path = export_onnx(name, HERE / "onnx")
            if not args.skip_arm:
                rows.append(arm_row(name, path, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr)
            if not args.skip_cuda:
                rows.append(cuda_row(name, path, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr)
    print("| model | target | build s | .so MB | result |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["target"] == "rpi4":
            result = (f"qemu-aarch64 median {r['qemu_median_ms']:.0f} ms (emulated), "
                      f"max abs err vs ORT {r['max_abs_err_vs_ort']:.2e}")
        else:
            result = (f"{r['kernels']} kernels, fatbin {r['fatbin_kb']} kB, "
                      f"SASS {','.join(r['sass'])}, PTX {','.join(r['ptx'])}")
        print(f"| {r['model']} | {r['target']} | {r['build_s']} | {r['so_mb']} | {result} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
