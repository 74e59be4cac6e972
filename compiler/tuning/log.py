"""Tuning logs: MetaSchedule JSON databases that are safe to share between machines.

A log is a directory holding MetaSchedule's two JSON-lines files,

    <log>/<family>/database_workload.json        one line per kernel (workload)
    <log>/<family>/database_tuning_record.json   one line per measured schedule

where ``<family>`` is ``<kind>-<arch>`` (e.g. ``llvm-x86_64``). Every record
carries the full TVM target it was measured on. MetaSchedule itself applies a
record to any target that asks, so mcc filters here: a record is used only when
its *target key* (kind, triple, CPU / GPU arch, features) equals the compile
target's. Other records are counted and reported as refused, never applied.

Records are appended as they are measured (MetaSchedule's JSONDatabase appends
one line per record), so an interrupted tuning run keeps all finished batches.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcc.errors import MccError
from mcc.schedule.records import (
    RECORD_FILE,
    WORKLOAD_FILE,
    RawRecord,
    best_per_workload,
    describe_key,
    read_raw,
    rechecked_only,
)


def open_log(directory: Path):
    """A JSONDatabase in ``directory`` (created if needed) that appends each commit to disk.

    A last line cut short by a killed run is dropped first (MetaSchedule's loader would
    refuse the whole file); it held the one record that was being written."""
    from tvm.s_tir import meta_schedule as ms

    directory.mkdir(parents=True, exist_ok=True)
    for name in (WORKLOAD_FILE, RECORD_FILE):
        path = directory / name
        if path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                path.write_bytes(data[:data.rfind(b"\n") + 1])
    return ms.database.JSONDatabase(work_dir=str(directory), module_equality="structural")


@dataclass(frozen=True)
class MergeReport:
    output: str
    inputs: tuple[str, ...]
    records_in: int
    records_out: int
    targets: tuple[str, ...]

    def to_json(self) -> dict:
        return {"output": self.output, "inputs": list(self.inputs),
                "records_in": self.records_in, "records_out": self.records_out,
                "targets": list(self.targets)}

    def lines(self) -> list[str]:
        return [f"merged {self.records_in} records from {len(self.inputs)} logs into "
                f"{self.records_out} (the best per workload and target; targets: "
                f"{'; '.join(self.targets) or 'none'})",
                f"wrote {self.output}"]


def merge_logs(inputs, output) -> MergeReport:
    """Merge tuning logs from several machines, keeping the best record per workload and target.

    Each input is a database directory or a log root with ``<family>/`` subdirectories;
    the output keeps that layout. Lines are copied as they are (no TVM round trip), and
    the output is written to a temp dir and moved into place, so a failure leaves no
    half-written log.
    """
    inputs = [Path(p) for p in inputs]
    by_family: dict[str, list[RawRecord]] = {}
    total = 0
    for root in inputs:
        if not root.is_dir():
            raise MccError(f"tuning log '{root}' is not a directory")
        dirs = [d.parent for d in sorted(root.glob(f"*/{RECORD_FILE}"))]
        if (root / RECORD_FILE).is_file():
            dirs.append(root)
        if not dirs:
            raise MccError(f"tuning log '{root}' holds no {RECORD_FILE} (in it or in <family>/)")
        for directory in dirs:
            raws = read_raw(directory)
            total += len(raws)
            family = directory.name if directory != root else _family_of(raws, root)
            by_family.setdefault(family, []).extend(raws)
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise MccError(f"merge output '{output}' exists and is not empty; choose a new directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mcc-merge-", dir=output.parent))
    try:
        kept, keys = 0, set()
        for family, raws in sorted(by_family.items()):
            best = best_per_workload(rechecked_only(raws))  # mcc.tuning.recheck
            index: dict[str, int] = {}
            workload_lines, record_lines = [], []
            for raw in best:
                if raw.workload_id not in index:
                    index[raw.workload_id] = len(workload_lines)
                    workload_lines.append(json.dumps(raw.workload))
                record_lines.append(json.dumps([index[raw.workload_id], raw.record]))
                keys.add(describe_key(raw.key))
            (staging / family).mkdir()
            (staging / family / WORKLOAD_FILE).write_text("".join(f"{ln}\n" for ln in
                                                                  workload_lines))
            (staging / family / RECORD_FILE).write_text("".join(f"{ln}\n" for ln in
                                                                record_lines))
            kept += len(best)
        if output.exists():
            output.rmdir()
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MergeReport(str(output), tuple(str(p) for p in inputs), total, kept,
                       tuple(sorted(keys)))


def _family_of(raws: list[RawRecord], root: Path) -> str:
    """Family directory name for a flat database, from its records' targets."""
    if not raws:
        return root.name
    target = raws[0].record[2]
    arch = str(target.get("mtriple") or "x86_64").split("-")[0]
    return f"{target['kind']}-{arch}"
