"""Run the ONNX backend node tests against mcc and write docs/ONNX_SUPPORT.md.

    .venv/bin/python benchmarks/onnx_conformance.py                 # all ~1,900 node tests
    .venv/bin/python benchmarks/onnx_conformance.py -k lstm -k gru   # a subset (regexes)

Each test runs in one of ``--jobs`` worker processes; a test that exceeds
``--timeout`` seconds or crashes its worker is recorded as a failure with that
reason and the worker is restarted. The table and every failure's one-line
reason go to ``--output`` (only for a full run unless ``--output`` is given);
the raw results go to ``--json``. ``--update -k PATTERN`` re-runs some tests
(after a fix) and merges them into the last full run's results and report.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker() -> None:
    """Read test names on stdin, write one JSON result per line on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    from mcc.frontends.common import native_stderr_silenced
    from mcc.verify.conformance import node_cases, run_case

    cases = node_cases()
    out = sys.stdout
    sys.stdout = sys.stderr  # keep converter chatter off the result channel
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        name = line.strip()
        with native_stderr_silenced():
            result = run_case(cases[name])
        print(json.dumps(result.to_json()), file=out, flush=True)


class Slot:
    """One worker process; restarted after a timeout or crash. ``argv``: the worker's
    command (default: this script's ``--worker``)."""

    def __init__(self, argv=None):
        self.proc = None
        self.argv = argv or [sys.executable, __file__, "--worker"]

    def start(self):
        env = dict(os.environ, TVM_NUM_THREADS="1", OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self._lines), daemon=True).start()
        if self._lines.get(timeout=300) != "ready":
            raise RuntimeError("conformance worker failed to start")

    @staticmethod
    def _read(proc, lines):
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put(None)

    def run(self, name: str, op: str, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            return {"name": name, "op": op, "status": "fail",
                    "reason": f"timeout: no result within {timeout:.0f} s", "seconds": timeout}
        if line is None:
            code = self.proc.wait()
            self.proc = None
            return {"name": name, "op": op, "status": "fail",
                    "reason": f"crash: the compiler process died (exit code {code})",
                    "seconds": 0.0}
        return json.loads(line)

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def run_all(names: list[str], ops: dict[str, str], jobs: int, timeout: float,
            argv=None) -> list[dict]:
    todo: queue.Queue = queue.Queue()
    for name in names:
        todo.put(name)
    results, lock = [], threading.Lock()
    start = time.perf_counter()

    def loop():
        slot = Slot(argv)
        try:
            while True:
                try:
                    name = todo.get_nowait()
                except queue.Empty:
                    return
                result = slot.run(name, ops[name], timeout)
                with lock:
                    results.append(result)
                    done = len(results)
                    if done % 50 == 0 or done == len(names):
                        passed = sum(r["status"] == "pass" for r in results)
                        print(f"[conformance] {done}/{len(names)} run, {passed} pass, "
                              f"{time.perf_counter() - start:.0f} s", flush=True)
        finally:
            slot.stop()

    threads = [threading.Thread(target=loop) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results, key=lambda r: r["name"])


def write_markdown(results: list[dict], path: Path, command: str, seconds: float) -> None:
    import onnx
    import tvm

    counts = Counter(r["status"] for r in results)
    specialized = sum(1 for r in results if r["status"] == "pass" and r.get("specialized"))
    by_op = defaultdict(Counter)
    for r in results:
        by_op[r["op"]][r["status"]] += 1
        by_op[r["op"]]["specialized"] += r["status"] == "pass" and bool(r.get("specialized"))
    lines = [
        "# ONNX support: the ONNX backend node tests",
        "",
        "Written by `benchmarks/onnx_conformance.py`; do not edit by hand. Each node test of",
        f"onnx {onnx.__version__} is compiled by mcc (import with mcc's converter extensions,",
        "graph pipeline, schedule, `tvm.compile` for the host CPU) and its outputs compared",
        "with ONNX's reference outputs using the ONNX runner's own check (shape, dtype,",
        "`assert_allclose` with the test's rtol/atol).",
        "",
        f"- command: `{command}`",
        f"- tvm {tvm.__version__}, {len(results)} node tests, {seconds / 60:.1f} min "
        "(2 shared CPU cores)",
        f"- **strict: {counts['pass'] - specialized} pass** with every graph input a run-time",
        "  input, as the test feeds it (the count to quote)",
        f"- **pass {counts['pass']}**, fail {counts['fail']}, skip {counts['skip']}, counting also",
        f"  {specialized} tests that pass only because a shape operand (reduce axes, TopK k,",
        "  Resize sizes, ...) arrives as a graph *input*: TVM needs those at compile time, so",
        "  the backend compiles them with that input bound to the value the test feeds",
        "  (`import_onnx(..., constant_inputs=...)`, what `mcc compile --bind` does),",
        "  recompiling if it changes.",
        "- int4/uint4/int2/uint2/float4e2m1 tensors are held one per byte (TVM's runtime",
        "  cannot hold packed sub-byte arrays); the backend converts them at the boundary.",
        "- skip: string tensors (TVM has no string dtype) and training-only ops.",
        "",
        "## Per op",
        "",
        "| op | pass | (bound inputs) | fail | skip |",
        "|---|---:|---:|---:|---:|",
    ]
    for op in sorted(by_op):
        c = by_op[op]
        lines.append(f"| {op} | {c['pass']} | {c['specialized'] or ''} | {c['fail']} "
                     f"| {c['skip']} |")
    for status, title in (("fail", "Failures"), ("skip", "Skipped")):
        lines += ["", f"## {title}", "", "| test | op | reason |", "|---|---|---|"]
        lines += [f"| {r['name']} | {r['op']} | {r['reason'].replace('|', '/')} |"
                  for r in results if r["status"] == status]
    api_block = _public_api_block(path)  # onnx_node_tests_api.py --doc's paragraph, kept
    if api_block:
        lines[8:8] = api_block + [""]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


API_BLOCK = ("<!-- public-api -->", "<!-- /public-api -->")


def _public_api_block(path: Path) -> list[str]:
    """The lines of the public-API paragraph (benchmarks/onnx_node_tests_api.py --doc) in
    the report at ``path``, markers included; [] if none."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    if API_BLOCK[0] in lines and API_BLOCK[1] in lines:
        return lines[lines.index(API_BLOCK[0]):lines.index(API_BLOCK[1]) + 1]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only tests whose name matches this regex (repeatable)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report (default docs/ONNX_SUPPORT.md on a full run)")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw results (default build/onnx_conformance.json for a full run, "
                             "build/onnx_conformance_subset.json for a -k subset)")
    parser.add_argument("--update", action="store_true",
                        help="re-run the selected tests, merge them into the --json results "
                             "of an earlier full run and rewrite the full report")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()

    from mcc.verify.conformance import node_cases, op_of

    cases = node_cases()
    names = sorted(n for n in cases
                   if not args.patterns or any(re.search(p, n) for p in args.patterns))
    ops = {n: op_of(cases[n]) for n in names}
    print(f"[conformance] {len(names)} node tests, {args.jobs} jobs", flush=True)
    start = time.perf_counter()
    results = run_all(names, ops, args.jobs, args.timeout)
    seconds = time.perf_counter() - start
    command = "python " + " ".join(["benchmarks/onnx_conformance.py"] + sys.argv[1:])
    full_run = not args.patterns
    if args.json is None:
        name = "onnx_conformance.json" if full_run or args.update else \
            "onnx_conformance_subset.json"
        args.json = ROOT / "build" / name
    if args.update:  # merge into the earlier full run's results
        earlier = json.loads(args.json.read_text())
        rerun = {r["name"]: r for r in results}
        results = [rerun.get(r["name"], r) for r in earlier["results"]]
        command = f"{earlier['command']}`, then `{command}"
        seconds += earlier["seconds"]
        full_run = True
    counts = Counter(r["status"] for r in results)
    print(f"[conformance] pass {counts['pass']}, fail {counts['fail']}, skip {counts['skip']} "
          f"of {len(results)} in {seconds:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "seconds": seconds,
                                     "results": results}, indent=1))
    output = args.output or (ROOT / "docs" / "ONNX_SUPPORT.md" if full_run else None)
    if output is not None:
        write_markdown(results, output, command, seconds)
        print(f"[conformance] wrote {output}")


if __name__ == "__main__":
    main()
