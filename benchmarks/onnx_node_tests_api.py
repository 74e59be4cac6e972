"""ONNX backend node tests through mcc's public API, on a fixed random sample.

    .venv/bin/python benchmarks/onnx_node_tests_api.py             # 150 tests, seed 0
    .venv/bin/python benchmarks/onnx_node_tests_api.py --sample 40 --seed 1
    .venv/bin/python benchmarks/onnx_node_tests_api.py --doc docs/ONNX_SUPPORT.md  # + the count

Where ``benchmarks/onnx_conformance.py`` drives mcc's import and build in process
(the ONNX backend API), this runs what a user would for each sampled test
(:func:`mcc.verify.conformance.run_case_api`): the model saved to a file,
``mcc.compile(path, input_shapes=<the test's input shapes>, bind=<shape-operand
inputs, with the test's values>, verify=True)`` (export, load, verification
against ONNX Runtime included), then ``.run(feed)``, compared with ONNX's
reference outputs with the runner's check and tolerances. Prints the pass count
and the failures grouped by their first error line (numbers masked); raw results
go to ``--json``. Workers and timeouts as in onnx_conformance.py.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker() -> None:
    """Read test names on stdin, write one JSON result per line on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    from mcc.frontends.common import native_stderr_silenced
    from mcc.verify.conformance import node_cases, run_case_api

    cases = node_cases()
    out = sys.stdout
    sys.stdout = sys.stderr  # keep converter chatter off the result channel
    print("ready", file=out, flush=True)
    with tempfile.TemporaryDirectory(prefix="mcc-api-tests-") as workdir:
        for line in sys.stdin:
            name = line.strip()
            with native_stderr_silenced():
                result = run_case_api(cases[name], workdir)
            print(json.dumps(result.to_json()), file=out, flush=True)


def sample_names(names: list[str], size: int, seed: int) -> list[str]:
    """A fixed sample: the same names for the same onnx version, size and seed."""
    return sorted(random.Random(seed).sample(sorted(names), min(size, len(names))))


def group_failures(results: list[dict]) -> dict[str, list[str]]:
    """Failure reason with numbers masked -> test names."""
    groups = defaultdict(list)
    for r in results:
        if r["status"] != "pass":
            reason = r["reason"] if r["status"] == "fail" else f"skip: {r['reason']}"
            groups[re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", reason)].append(r["name"])
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def write_doc(path: Path, counts: Counter, total: int, command: str, seed: int) -> None:
    """Put the result as a short paragraph near the top of the conformance report (between
    markers that onnx_conformance.py keeps when it rewrites the report)."""
    from onnx_conformance import API_BLOCK

    block = [
        API_BLOCK[0],
        f"**Through the public API: {counts['pass']} of {total} sampled node tests pass** "
        f"(`{command}`: a fixed sample, seed {seed}; each test as a user runs it:",
        "`mcc.compile(path, input_shapes=<the test's shapes>, bind=<shape-operand inputs>,",
        "verify=True)`, export, load and verification against ONNX Runtime included (on the",
        "test's inputs where synthetic ones are rejected and the error says to pass real",
        f"ones), then `.run(feed)` checked like the runner does; fail {counts['fail']}, "
        f"skip {counts['skip']}).",
        API_BLOCK[1],
    ]
    lines = path.read_text().splitlines()
    if API_BLOCK[0] in lines and API_BLOCK[1] in lines:
        lines[lines.index(API_BLOCK[0]):lines.index(API_BLOCK[1]) + 1] = block
    else:
        at = next((i for i, line in enumerate(lines) if line.startswith("- command:")), 2)
        lines[at:at] = block + [""]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=150, help="tests to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "onnx_node_tests_api.json")
    parser.add_argument("--doc", type=Path, default=None, metavar="MD",
                        help="write the pass count into this report (docs/ONNX_SUPPORT.md)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()

    import warnings

    warnings.simplefilter("ignore")  # numpy warnings while onnx builds its test cases
    from onnx_conformance import run_all

    from mcc.verify.conformance import node_cases, op_of

    cases = node_cases()
    names = sample_names(list(cases), args.sample, args.seed)
    ops = {n: op_of(cases[n]) for n in names}
    print(f"[api] {len(names)} sampled node tests (seed {args.seed}), {args.jobs} jobs",
          flush=True)
    start = time.perf_counter()
    results = run_all(names, ops, args.jobs, args.timeout,
                      argv=[sys.executable, __file__, "--worker"])
    seconds = time.perf_counter() - start
    counts = Counter(r["status"] for r in results)
    command = "python " + " ".join(["benchmarks/onnx_node_tests_api.py"] + sys.argv[1:])
    print(f"[api] pass {counts['pass']} of {len(results)} (fail {counts['fail']}, "
          f"skip {counts['skip']}) in {seconds:.0f} s: {command}")
    for reason, tests in group_failures(results).items():
        print(f"  {len(tests):3d}  {reason}")
        print(f"       {', '.join(tests)}")
    if args.doc is not None:
        write_doc(args.doc, counts, len(results), command, args.seed)
        print(f"[api] wrote {args.doc}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": command, "seconds": seconds, "seed": args.seed,
                                     "results": results}, indent=1))


if __name__ == "__main__":
    main()
