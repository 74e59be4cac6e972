"""Softmax and layer-norm kernels: dlight's CPU Reduction rule vs mcc's RowReduction, and
ONNX Runtime's own kernel on the same op, one thread each (kernel quality, not threading).

    .venv/bin/python benchmarks/row_reduction.py [--threads 1]

Each kernel is built as mcc builds it (TOPI's fast softmax / layer norm, mcc's TIR
pipeline with NaN propagation), timed by TVM's time_evaluator (median of 7 x 20 runs);
ONNX Runtime runs a one-node model (median of 200 runs). The last column is the largest
difference between the two schedules' outputs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SHAPES = [("Softmax", (1, 12, 128, 128)), ("Softmax", (1, 12, 197, 197)),
          ("LayerNormalization", (1, 197, 384)), ("LayerNormalization", (1, 128, 768)),
          ("LayerNormalization", (1, 1500, 384))]


def _prim_func(op, shape):
    from tvm import te, topi

    x = te.placeholder(shape, name="x")
    if op == "Softmax":
        return te.create_prim_func([x, topi.nn.fast_softmax(x, -1)])
    g = te.placeholder(shape[-1:], name="g")
    b = te.placeholder(shape[-1:], name="b")
    return te.create_prim_func([x, g, b, topi.nn.layer_norm(x, g, b, axis=[-1], epsilon=1e-5)])


def _tvm_ms(func, rule, target):
    import tvm

    from mcc.build import nan

    sch = rule.apply(func, target, False)
    lib = tvm.compile(tvm.IRModule({"main": sch.mod["main"]}), target=target,
                      tir_pipeline=nan.register())
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in p.shape])
                               .astype("float32")) for p in func.params]
    timer = lib.mod.time_evaluator("main", tvm.cpu(), number=20, repeat=7)
    return float(np.median(timer(*args).results) * 1e3), args[-1].numpy()


def _ort_ms(op, shape, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits, inputs = [], ["x"]
    attrs = {"axis": -1}
    if op == "LayerNormalization":
        rng = np.random.default_rng(1)
        inits = [numpy_helper.from_array(rng.standard_normal(shape[-1]).astype(np.float32), n)
                 for n in ("g", "b")]
        inputs += ["g", "b"]
        attrs["epsilon"] = 1e-5
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], **attrs)], "one_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options)
    feed = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM starts its pool

    import tvm
    from tvm.s_tir import dlight as dl

    from mcc.schedule.rules import RowReduction
    from mcc.targets import host_tvm_target

    target = tvm.target.Target(host_tvm_target())
    print(f"{args.threads} thread(s), target {target.attrs.get('mcpu', '')}")
    print("| op | shape | dlight Reduction ms | RowReduction ms | speed-up | ONNX Runtime ms "
          "| max diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for op, shape in SHAPES:
        func = _prim_func(op, shape)
        before, y0 = _tvm_ms(func, dl.cpu.Reduction(), target)
        after, y1 = _tvm_ms(func, RowReduction(), target)
        ort_ms = _ort_ms(op, list(shape), args.threads)
        print(f"| {op} | {'x'.join(map(str, shape))} | {before:.3f} | {after:.3f} | "
              f"{before / after:.1f}x | {ort_ms:.3f} | {np.abs(y0 - y1).max():.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
