"""Reading tuning records for a compile: the records of one target, the best per kernel,
the rechecked ones where a kernel has them, the default rules where they won.

These are the parts of the tuning logs (mcc.tuning.log, which writes and merges them, and
mcc.tuning.baseline, which measures the default rules' baselines) that ``schedule`` needs;
they live here so that the tuning package imports the schedule package and never the
reverse. Import them from here.
"""

from __future__ import annotations

import json
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


# The records mcc.tuning.recheck logs are tagged; where a workload has some, they alone
# count (read here, by compile and merge).
RECHECK_TAG = "mcc_rechecked"


def is_rechecked_trace_json(trace_json) -> bool:
    return RECHECK_TAG in json.dumps(trace_json, default=str)


def rechecked_only(raws) -> list:
    """``raws`` (mcc.schedule.records.RawRecord) without the search's own records of workloads
    that have rechecked ones (per target)."""
    checked = {(r.workload_id, r.key) for r in raws if is_rechecked_trace_json(r.record[0])}
    return [r for r in raws if (r.workload_id, r.key) not in checked
            or is_rechecked_trace_json(r.record[0])]


BASELINE_TAG = "mcc_default_rule"


def is_baseline_trace_json(trace_json) -> bool:
    return BASELINE_TAG in json.dumps(trace_json, default=str)


def is_baseline(raw) -> bool:
    """Whether a :class:`mcc.schedule.records.RawRecord` is a default-rule baseline."""
    return is_baseline_trace_json(raw.record[0])


def kernel_identity(func) -> int:
    """Structural hash of a kernel with the attributes a compile and a task may differ in
    (the weight mark, the symbol name) stripped."""
    from tvm_ffi import structural_hash

    return structural_hash(func.without_attr("layout_free_buffers")
                           .without_attr("global_symbol"))


def prefer_rules(raws) -> tuple[list, int]:
    """Drop baseline records, and tuned records slower than their workload's baseline.

    ``raws`` are RawRecords of one target. Returns the records to apply and how many
    workloads keep the default rules because their baseline beat every tuned record."""
    baseline: dict[str, float] = {}
    for raw in raws:
        if raw.valid and is_baseline(raw):
            baseline[raw.workload_id] = min(raw.secs, baseline.get(raw.workload_id, 1e100))
    kept, beaten = [], set()
    for raw in raws:
        if is_baseline(raw):
            continue
        limit = baseline.get(raw.workload_id)
        if limit is not None and raw.valid and raw.secs > limit:
            beaten.add(raw.workload_id)
            continue
        kept.append(raw)
    winners = {r.workload_id for r in kept if r.valid}
    return kept, len(beaten - winners)
