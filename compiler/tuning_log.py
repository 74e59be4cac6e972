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


def key_of(target_json: dict) -> str:
    """Canonical text naming what a target means for compatibility, from its JSON form."""
    key = {"kind": target_json["kind"]}
    for name in KEY_ATTRS:
        value = target_json.get(name)
        if value is None or value == "" or (name == "mattr" and len(value) == 0):
            continue
        key[name] = sorted(str(v) for v in value) if name == "mattr" else str(value)
    return json.dumps(key, sort_keys=True)


def target_key(target) -> str:
    """:func:`key_of` for a ``tvm.target.Target``."""
    return key_of(dict(target.export()))


def describe_key(key: str) -> str:
    """'llvm x86_64-linux-gnu znver4' style short form of a target key."""
    data = json.loads(key)
    parts = [data.pop("kind")] + [data[k] if isinstance(data[k], str) else "+".join(data[k])
                                  for k in KEY_ATTRS if k in data]
    return " ".join(parts)


def mean_secs(record) -> float:
    secs = [float(s) for s in (record.run_secs or [])]
    return sum(secs) / len(secs) if secs else float("inf")


def database_dirs(root: str | Path, family: str) -> list[Path]:
    """Databases under a log directory: ``root/family/`` and/or ``root`` itself."""
    root = Path(root)
    return [d for d in (root / family, root) if (d / RECORD_FILE).is_file()]


@dataclass
class RawRecord:
    """One record line, read as JSON only: filtering and ranking need no TVM objects
    (turning a record into one replays its whole schedule trace)."""

    workload: list  # the workload line: [structural hash, serialised module]
    record: list  # [trace, run_secs, target, args_info]
    source: str

    @property
    def secs(self) -> float:
        run = self.record[1] or []
        return sum(run) / len(run) if run else float("inf")

    @property
    def valid(self) -> bool:
        return self.secs < FAILED_SECS

    @property
    def key(self) -> str:
        return key_of(self.record[2])

    @property
    def workload_id(self) -> str:
        return self.workload[0]

    def rank(self) -> tuple:
        return (self.secs, json.dumps(self.record[0], sort_keys=True))


def _json_lines(path: Path) -> list:
    out = []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise MccError(f"tuning log '{path}' is not a text (JSON lines) file") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(path.read_text().splitlines()):
                continue  # a last line cut short by a kill: the batch in flight, dropped
            raise MccError(f"tuning log '{path}' line {number} is not valid JSON") from None
    return out


def read_raw(directory: Path) -> list[RawRecord]:
    """All record lines of one database directory, with their workload lines."""
    directory = Path(directory)
    if not (directory / WORKLOAD_FILE).is_file():
        raise MccError(f"tuning log '{directory}' has {RECORD_FILE} but no {WORKLOAD_FILE}")
    workloads = _json_lines(directory / WORKLOAD_FILE)
    out = []
    for line in _json_lines(directory / RECORD_FILE):
        try:
            index, record = line
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise IndexError(index)
            raw = RawRecord(workloads[index], record, str(directory))
            _check_shape(raw)
            out.append(raw)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            raise MccError(f"tuning log '{directory}' has a malformed record: "
                           f"{str(line)[:80]}") from None
    return out


def _check_shape(raw: RawRecord) -> None:
    """TypeError/ValueError unless ``raw`` has the fields filtering and ranking read."""
    if not (isinstance(raw.workload, list) and len(raw.workload) == 2
            and isinstance(raw.workload[0], str)):
        raise ValueError("workload")
    if not (isinstance(raw.record, list) and len(raw.record) >= 3
            and isinstance(raw.record[2], dict)):
        raise ValueError("record")
    run = raw.record[1] or []
    if not isinstance(run, list) or not all(isinstance(v, (int, float)) for v in run):
        raise ValueError("run_secs")
    raw.secs, raw.key  # noqa: B018 -- raise here, not in a sort


def materialize(raws: list[RawRecord]) -> list:
    """MetaSchedule TuningRecords for ``raws`` (each distinct workload parsed once)."""
    from tvm.s_tir import meta_schedule as ms

    workloads, out = {}, []
    for raw in raws:
        try:
            if raw.workload_id not in workloads:
                workloads[raw.workload_id] = ms.database.Workload.from_json(raw.workload)
            out.append(ms.database.TuningRecord.from_json(raw.record,
                                                          workloads[raw.workload_id]))
        except Exception as err:  # a log from another TVM version: name it, in one line
            raise MccError(f"cannot read a record of tuning log '{raw.source}': "
                           f"{first_line(err)}") from None
    return out


def best_per_workload(raws: list[RawRecord]) -> list[RawRecord]:
    """The fastest valid record per (workload, target key); ties broken by trace text, so
    the choice, and hence the compiled module, do not depend on file order."""
    best: dict[tuple[str, str], RawRecord] = {}
    for raw in raws:
        if not raw.valid:
            continue
        slot = (raw.workload_id, raw.key)
        if slot not in best or raw.rank() < best[slot].rank():
            best[slot] = raw
    return [best[slot] for slot in sorted(best)]


@dataclass
class RecordSet:
    """Records of one target, with what was refused on the way."""

    records: list = field(default_factory=list)  # RawRecord
    refused: dict[str, int] = field(default_factory=dict)  # target key -> count

    def refused_text(self) -> str:
        return ", ".join(f"{n} for {describe_key(k)}" for k, n in sorted(self.refused.items()))


def records_for_target(dirs, target) -> RecordSet:
    """The records in ``dirs`` measured on ``target``'s key (failed ones included: tuning
    must know them; :func:`best_per_workload` drops them for compiling). Records of other
    targets are only counted, as refused."""
    want = target_key(target)
    result = RecordSet()
    for directory in dirs:
        for raw in read_raw(Path(directory)):
            if raw.key == want:
                result.records.append(raw)
            else:
                result.refused[raw.key] = result.refused.get(raw.key, 0) + 1
    return result


def memory_database(records):
    """An in-memory MetaSchedule database holding exactly ``records`` (TuningRecords)."""
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.MemoryDatabase(module_equality="structural")
    for record in records:
        workload = db.commit_workload(record.workload.mod)
        db.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, record.run_secs, record.target, record.args_info))
    return db


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
    from mcc.tune_recheck import rechecked_only

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
            best = best_per_workload(rechecked_only(raws))  # mcc.tune_recheck
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
