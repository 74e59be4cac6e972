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
from dataclasses import dataclass, field
from pathlib import Path

from mcc.errors import MccError, first_line

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
# Target attributes that decide whether a schedule fits a machine. "num-cores" is
# left out on purpose: a schedule tuned on 2 cores is valid (if not optimal) on 8.
KEY_ATTRS = ("mtriple", "mcpu", "mattr", "arch")
FAILED_SECS = 1e9  # MetaSchedule stores 1e10 s for candidates that failed to build or run


def target_key(target) -> str:
    """Canonical text naming what a record's target means for compatibility."""
    attrs = target.attrs
    key = {"kind": target.kind.name}
    for name in KEY_ATTRS:
        value = attrs.get(name) if name in attrs else None
        if value is None or value == "" or (name == "mattr" and len(value) == 0):
            continue
        key[name] = sorted(str(v) for v in value) if name == "mattr" else str(value)
    return json.dumps(key, sort_keys=True)


def describe_key(key: str) -> str:
    """'llvm x86_64-linux-gnu znver4' style short form of a target key."""
    data = json.loads(key)
    parts = [data.pop("kind")] + [data[k] if isinstance(data[k], str) else "+".join(data[k])
                                  for k in KEY_ATTRS if k in data]
    return " ".join(parts)


def mean_secs(record) -> float:
    secs = [float(s) for s in (record.run_secs or [])]
    return sum(secs) / len(secs) if secs else float("inf")


def is_valid(record) -> bool:
    return mean_secs(record) < FAILED_SECS


def database_dirs(root: str | Path, family: str) -> list[Path]:
    """Databases under a log directory: ``root/family/`` and/or ``root`` itself."""
    root = Path(root)
    return [d for d in (root / family, root) if (d / RECORD_FILE).is_file()]


def read_records(directory: Path) -> list:
    """All tuning records of one database directory (workloads resolved)."""
    from tvm.s_tir import meta_schedule as ms

    if not (directory / WORKLOAD_FILE).is_file():
        raise MccError(f"tuning log '{directory}' has {RECORD_FILE} but no {WORKLOAD_FILE}")
    try:
        db = ms.database.JSONDatabase(path_workload=str(directory / WORKLOAD_FILE),
                                      path_tuning_record=str(directory / RECORD_FILE),
                                      allow_missing=False)
        return list(db.get_all_tuning_records())
    except Exception as err:  # a truncated / foreign file: name it, in one line
        raise MccError(f"cannot read tuning log '{directory}': {first_line(err)}") from None


@dataclass
class RecordSet:
    """Records of one target, with what was refused on the way."""

    records: list = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # target key -> count
    sources: list[str] = field(default_factory=list)

    def refused_text(self) -> str:
        return ", ".join(f"{n} for {describe_key(k)}" for k, n in sorted(self.refused.items()))


def records_for_target(dirs, target, include_failed=False) -> RecordSet:
    """The records in ``dirs`` measured on ``target``'s key (failed ones only when
    ``include_failed``: tuning must know them, compiling must not use them); records of
    other targets are counted as refused."""
    want = target_key(target)
    result = RecordSet(sources=[str(d) for d in dirs])
    for directory in dirs:
        for record in read_records(Path(directory)):
            key = target_key(record.target)
            if key != want:
                result.refused[key] = result.refused.get(key, 0) + 1
            elif include_failed or is_valid(record):
                result.records.append(record)
    return result


def _workload_id(record) -> int:
    from tvm_ffi import structural_hash

    return structural_hash(record.workload.mod)


def _trace_text(record) -> str:
    return json.dumps(record.trace.as_json(), sort_keys=True, default=str)


def best_per_workload(records) -> list:
    """The fastest record per (workload, target key); ties broken by trace text, so the
    choice and hence the compiled module do not depend on file order."""
    best: dict[tuple[int, str], tuple] = {}
    for record in records:
        slot = (_workload_id(record), target_key(record.target))
        rank = (mean_secs(record), _trace_text(record))
        if slot not in best or rank < best[slot][0]:
            best[slot] = (rank, record)
    return [best[slot][1] for slot in sorted(best)]


def memory_database(records):
    """An in-memory MetaSchedule database holding exactly ``records``."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.MemoryDatabase(module_equality="structural")
    for record in records:
        _commit(db, record)
    return db


def _commit(db, record) -> None:
    from tvm.s_tir import meta_schedule as ms

    workload = db.commit_workload(record.workload.mod)
    db.commit_tuning_record(ms.database.TuningRecord(
        record.trace, workload, record.run_secs, record.target, record.args_info))


def open_log(directory: Path):
    """A JSONDatabase in ``directory`` (created if needed) that appends each commit to disk."""
    from tvm.s_tir import meta_schedule as ms

    directory.mkdir(parents=True, exist_ok=True)
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
    the output keeps that layout. The output is written to a temp dir and moved into
    place, so a failure leaves no half-written log.
    """
    inputs = [Path(p) for p in inputs]
    by_family: dict[str, list] = {}
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
            records = [r for r in read_records(directory) if is_valid(r)]
            total += len(records)
            family = directory.name if directory != root else _family_of(records, root)
            by_family.setdefault(family, []).extend(records)
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise MccError(f"merge output '{output}' exists and is not empty; choose a new directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".mcc-merge-", dir=output.parent))
    try:
        kept, keys = 0, set()
        for family, records in sorted(by_family.items()):
            best = best_per_workload(records)
            db = open_log(staging / family)
            for record in best:
                _commit(db, record)
                keys.add(describe_key(target_key(record.target)))
            kept += len(best)
        if output.exists():
            output.rmdir()
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MergeReport(str(output), tuple(str(p) for p in inputs), total, kept,
                       tuple(sorted(keys)))


def _family_of(records, root: Path) -> str:
    """Family directory name for a flat database, from its records' targets."""
    if not records:
        return root.name
    target = records[0].target
    triple = str(target.attrs.get("mtriple", "")) if "mtriple" in target.attrs else ""
    arch = triple.split("-")[0] if triple else "x86_64"
    return f"{target.kind.name}-{arch}"
