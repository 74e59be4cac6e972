"""Rerun the benchmark scripts and rewrite their tables in docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/tables.py                 # every table (hours: it tunes for 2 h)
    .venv/bin/python benchmarks/tables.py --only winograd # one table (repeatable)
    .venv/bin/python benchmarks/tables.py --list          # the tables and their commands
    .venv/bin/python benchmarks/tables.py --only int8 --dry-run   # print, do not write

Each table of docs/BENCHMARKS.md sits between ``<!-- table:NAME -->`` and
``<!-- /table:NAME -->``. For a table, this script runs its commands (the scripts in this
directory, with this Python, from the repository root), and replaces what is between the
markers with, per command, the command line and what the script printed on stdout (the
scripts print Markdown tables there and their progress on stderr), then one line saying
when, on which CPU and at which commit it was measured. Text outside the markers (what
the figures mean) is left as it is. A table whose markers are missing is appended at
the end of the file. A command that fails stops the script, leaving that table as it
was; tables finished before it are already written.

Time on a quiet machine: on a shared one the figures are noise (wrap the run in
``flock /tmp/mcc-bench.lock`` where others benchmark too). ``--keep-logs DIR`` keeps
the tuning log the ``tune`` table makes (by default a temporary directory; shown as LOG in the doc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"


@dataclass(frozen=True)
class Table:
    name: str
    title: str  # the section heading used when the markers are missing
    commands: tuple  # argv lists after the Python executable; "{log}" = the tuning log dir
    env: dict = field(default_factory=dict)
    format: str = "stdout"  # how stdout becomes Markdown: stdout, tune_control, onnx


TABLES = [
    Table("default", "Default compile: shipped tuning records, `--layout auto`", (
        ["benchmarks/tune.py", "--skip-tune", "--models", "mobilenet_v2,resnet50",
         "--repeat", "20"],)),
    Table("models", "Every benchmark model against ONNX Runtime", (
        ["benchmarks/run.py", "--repeat", "20"],)),
    Table("single_thread", "One core each, CPU time", (
        ["benchmarks/single_thread.py", "--repeat", "5"],)),
    Table("kernels", "Per hot kernel: GFLOP/s against the CPU's peak", (
        ["benchmarks/kernels.py", "resnet50", "--top", "10", "--runs", "5", "--cpu-time"],
        ["benchmarks/kernels.py", "bert_base", "--top", "8", "--runs", "3", "--cpu-time"]),
        env={"TVM_NUM_THREADS": "1"}),
    Table("layout", "Layouts: `--layout auto` against each fixed layout", (
        ["benchmarks/layout.py", "--models", "resnet18,resnet50,mobilenet_v2",
         "--layouts", "NHWC,NCHWc,auto", "--repeat", "20"],)),
    Table("winograd", "Winograd: one conv + bias + ReLU, direct against F(4x4, 3x3)", (
        ["benchmarks/winograd.py"],)),
    Table("tune", "60 minutes of tuning per model, from an empty log", (
        ["benchmarks/tune.py", "--models", "mobilenet_v2,resnet50", "--minutes", "60",
         "--trials-per-iter", "32", "--skip-measure", "--log", "{log}"],
        ["benchmarks/tune_vs_rules.py", "--model", "mobilenet_v2", "--log", "{log}",
         "--layout", "NHWC", "--rounds", "20"],
        ["benchmarks/tune_vs_rules.py", "--model", "resnet50", "--log", "{log}",
         "--layout", "NHWC", "--rounds", "20"])),
    Table("cold_kernels", "Shipped records against the default rules, per kernel, hot and cold", (
        ["benchmarks/cold_kernels.py", "--model", "resnet50", "--log", "tuning_logs",
         "--layout", "NHWC", "--top", "10"],)),
    Table("tune_control", "`mcc tune`: time budget and Ctrl-C", (
        ["benchmarks/tune_control.py", "--model", "mobilenet_v2", "--budget-min", "0.5"],),
        format="tune_control"),
    Table("int8", "int8 against fp32 and ONNX Runtime's QDQ int8", (
        ["benchmarks/int8.py", "--models", "resnet50", "--repeat", "20"],
        ["benchmarks/int8.py", "--models", "bert_base", "--repeat", "10"])),
    Table("int8_single_thread", "int8, one thread each, CPU time", (
        ["benchmarks/int8.py", "--models", "resnet50", "--single-thread", "--repeat", "40"],
        ["benchmarks/int8.py", "--models", "bert_base", "--single-thread", "--repeat", "8"])),
    Table("peers", "Each engine's best mode: mcc, ONNX Runtime, OpenVINO", (
        ["benchmarks/peers.py", "--models", "resnet50,mobilenet_v2,minilm,ppocr_v4_rec",
         "--single-thread", "--repeat", "10"],)),
    Table("int8_kernel", "The int8 kernel alone", (
        ["benchmarks/int8_kernel.py", "--cpu-time", "--vnni-only", "--repeat", "100"],)),
    Table("prune", "Structured pruning: unpruned against pruned", (
        ["benchmarks/prune.py", "--model", "resnet50", "--prune", "0.3", "--repeat", "10"],
        ["benchmarks/prune.py", "--model", "resnet50", "--prune", "zero",
         "--zero-filters", "0.3", "--repeat", "10"],
        ["benchmarks/prune.py", "--model", "mobilenet_v2", "--prune", "0.3", "--repeat", "20"])),
    Table("deploy", "Deployment: rpi4 under qemu-aarch64, cuda-sm90 device code", (
        ["benchmarks/deploy.py", "--models", "mobilenet_v2,resnet18"],)),
    Table("onnx", "ONNX backend node tests", (
        ["benchmarks/onnx_conformance.py", "--jobs", "2",
         "--json", "build/onnx_conformance.json"],),
        format="onnx"),
]
BY_NAME = {t.name: t for t in TABLES}


def _shown(argv: list, env: dict) -> str:
    """The command as a reader would type it from the repository root."""
    prefix = "".join(f"{k}={v} " for k, v in env.items())
    return prefix + ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv)


def _run(argv: list, env: dict) -> str:
    print(f"[tables] {_shown(argv, env)}", file=sys.stderr, flush=True)
    full_env = dict(os.environ, **env)
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=full_env,
                          stdout=subprocess.PIPE, text=True)  # stderr: progress, to the terminal
    if proc.returncode != 0:
        raise SystemExit(f"[tables] failed (exit {proc.returncode}): {_shown(argv, env)}")
    return proc.stdout


def _markdown(stdout: str) -> str:
    """A script's stdout as Markdown: tables kept, other lines as a list."""
    out, in_list = [], False
    for line in stdout.strip("\n").splitlines():
        line = line.rstrip()
        if not line:
            if out and out[-1] != "":
                out.append("")
            in_list = False
        elif line.startswith("|"):
            if out and out[-1] != "" and not out[-1].startswith("|"):
                out.append("")
            out.append(line)
            in_list = False
        else:
            if out and out[-1] != "" and not in_list:
                out.append("")
            out.append(f"- {line}")
            in_list = True
    return "\n".join(out).strip("\n")


def _tune_control(stdout: str) -> str:
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    budget = next(r for r in rows if "budget" in r)
    stop = next(r for r in rows if "ctrl_c" in r)
    b, c = budget["budget"], stop["ctrl_c"]
    return "\n".join([
        "| model | budget s | tune s (reported) | over budget s | trials | Ctrl-C to exit s "
        "| exit code | failed records logged |",
        "|---|---|---|---|---|---|---|---|",
        f"| {budget['model']} | {b['budget_s']:.0f} | {b['tune_s']:.1f} | {b['over_s']:.1f} "
        f"| {b['trials']} | {c['stop_s']} | {c['exit_code']} | {c['failed_records']} |",
        "",
        f"- last line after Ctrl-C: `{c['last_line']}`",
    ])


def _onnx(stdout: str) -> str:
    data = json.loads((ROOT / "build" / "onnx_conformance.json").read_text())
    results = data["results"]
    count = {s: sum(1 for r in results if r["status"] == s) for s in ("pass", "fail", "skip")}
    bound = sum(1 for r in results if r["status"] == "pass" and r.get("specialized"))
    return "\n".join([
        "| node tests | strict pass | pass (incl. bound inputs) | fail | skip | minutes |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(results):,} | **{count['pass'] - bound:,}** | {count['pass']:,} "
        f"| {count['fail']:,} | {count['skip']:,} | {data['seconds'] / 60:.1f} |",
    ])


FORMATS = {"stdout": _markdown, "tune_control": _tune_control, "onnx": _onnx}


def _measured_line() -> str:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "?"
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = f"{names[0]} x {len(names)}" if names else cpu
    except OSError:
        pass
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"Measured {when} by `benchmarks/tables.py`, commit {rev}, {cpu}."


def make(table: Table, log_dir: Path) -> str:
    parts = []
    for template in table.commands:
        argv = [a.replace("{log}", str(log_dir)) for a in template]
        stdout = _run(argv, table.env)
        shown = _shown([a.replace("{log}", "LOG") for a in template], table.env)
        parts.append(f"    {shown}\n\n{FORMATS[table.format](stdout)}")
    parts.append(_measured_line())
    return "\n\n".join(parts)


def replace(doc: str, table: Table, body: str) -> str:
    start, end = f"<!-- table:{table.name} -->", f"<!-- /table:{table.name} -->"
    block = f"{start}\n{body}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc, count=1)
    return doc.rstrip("\n") + f"\n\n## {table.title}\n\n{block}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only this table (repeatable): {', '.join(BY_NAME)}")
    parser.add_argument("--list", action="store_true", help="list the tables and commands")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the new blocks instead of writing docs/BENCHMARKS.md")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="tuning log directory of the 'tune' table (default: temporary)")
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    args = parser.parse_args()

    unknown = [n for n in args.only if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown table {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    tables = [BY_NAME[n] for n in args.only] if args.only else TABLES
    if args.list:
        for t in tables:
            print(f"{t.name}: {t.title}")
            for argv in t.commands:
                print(f"    {_shown([a.replace('{log}', 'LOG') for a in argv], t.env)}")
        return

    with tempfile.TemporaryDirectory(prefix="mcc-tables-") as tmp:
        log_dir = args.keep_logs or Path(tmp) / "tunelog"
        for table in tables:
            body = make(table, log_dir.resolve())
            if args.dry_run:
                print(f"<!-- table:{table.name} -->\n{body}\n<!-- /table:{table.name} -->\n")
                continue
            doc = replace(args.doc.read_text(), table, body)
            args.doc.write_text(doc)
            print(f"[tables] {table.name}: written to {args.doc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
