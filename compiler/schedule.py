"""Give every PrimFunc a schedule: tuning records first, then default rules.

Order of preference per kernel (a "task"):
  1. a MetaSchedule record from a tuning log for this target family
     (``tuning_logs/<kind>-<arch>/`` and any ``--tuning-log`` directory);
  2. mcc's int8 rule (mcc.int8_schedule) for quantized kernels, then
     dlight's CPU rules (GEMV, reductions) where they match;
  3. otherwise the kernel keeps TVM's naive loop nest, and is counted as such.
The counts are reported, so a user sees how much of a model is tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tvm
from tvm import tirx

PROJECT_TUNING_LOGS = Path(__file__).resolve().parent.parent / "tuning_logs"


@dataclass(frozen=True)
class ScheduleReport:
    tasks: int
    from_records: int
    from_rules: int
    naive: int
    record_dirs: tuple[str, ...]

    def to_json(self) -> dict:
        return {"tasks": self.tasks, "from_records": self.from_records,
                "from_default_rules": self.from_rules, "naive": self.naive,
                "tuning_logs": list(self.record_dirs)}


def _scheduled_funcs(mod) -> set[str]:
    return {gv.name_hint for gv, func in mod.functions_items()
            if isinstance(func, tirx.PrimFunc) and func.attrs is not None
            and bool(func.attrs.get("tirx.is_scheduled", False))}


def _prim_funcs(mod) -> set[str]:
    return {gv.name_hint for gv, func in mod.functions_items() if isinstance(func, tirx.PrimFunc)}


def record_dirs_for(family: str, extra_dirs: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """Tuning-log directories that hold MetaSchedule JSON databases for ``family``."""
    candidates = [PROJECT_TUNING_LOGS / family, Path("tuning_logs") / family]
    for extra in extra_dirs:
        candidates += [Path(extra) / family, Path(extra)]
    found, seen = [], set()
    for path in candidates:
        key = path.resolve()
        if key not in seen and (path / "database_tuning_record.json").is_file():
            seen.add(key)
            found.append(path)
    return found


def _database(dirs: list[Path]):
    from tvm.s_tir import meta_schedule as ms

    dbs = [ms.database.JSONDatabase(path_workload=str(d / "database_workload.json"),
                                    path_tuning_record=str(d / "database_tuning_record.json"),
                                    allow_missing=False) for d in dirs]
    return dbs[0] if len(dbs) == 1 else ms.database.UnionDatabase(*dbs)


def schedule(mod: tvm.IRModule, target: tvm.target.Target, family: str,
             extra_dirs=()) -> tuple[tvm.IRModule, ScheduleReport]:
    from tvm import relax
    from tvm.s_tir import dlight as dl

    from mcc.int8_schedule import schedule_int8

    tasks = _prim_funcs(mod)
    dirs = record_dirs_for(family, extra_dirs)
    with target:
        if dirs:
            with _database(dirs):
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
        from_records = _scheduled_funcs(mod) & tasks
        mod = schedule_int8(mod, target)  # mcc's int8 kernels (VNNI where available)
        mod = dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction())(mod)
    scheduled = _scheduled_funcs(mod) & tasks
    report = ScheduleReport(len(tasks), len(from_records), len(scheduled - from_records),
                            len(tasks - scheduled), tuple(str(d) for d in dirs))
    return mod, report
