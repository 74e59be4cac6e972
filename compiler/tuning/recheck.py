"""Recheck: before a tuning run ends, time each task's best records against its baseline again.

The search times each candidate once and keeps the fastest of thousands, so its best
record is often one that had a lucky run; the default-rule baseline was timed once too.
On ResNet-50 the 29 baselines, timed again a minute after a 60-minute run, came out at
0.54x to 2.0x their logged times, and three kernels whose records "beat" the rules ran
slower than the rules in the network. So each tuned task's top records and its baseline
are timed again, ``rounds`` times interleaved, and each one's median is logged as a new
record, tagged by a root-block annotation (:data:`RECHECK_TAG`) as baselines are.

Where a workload has rechecked records, compile and merge go by them alone
(:func:`mcc.schedule.records.rechecked_only`): the search's single timings of it no longer count.

With ``check_outputs`` (a CPU target measured on this machine), a record whose outputs
differ from the baseline's (mcc.tuning.outputs) is not timed: it is logged as a failed
rechecked record, so it is never applied.
"""

from __future__ import annotations

import statistics

from mcc.schedule.records import FAILED_SECS, RECHECK_TAG


def recheck(contexts, database, baselines, target, builder, runner, log_db, stop, say=None,
            top_k: int = 3, rounds: int = 3, check_outputs: bool = False) -> int:
    """Time again, for each task (a TuneContext) with searched records in ``database``
    (the search's), its ``top_k`` records and its baseline (``baselines``: TuningRecords);
    log the medians. Returns how many records were logged. Stops between tasks once
    ``stop`` fires; a task cut short logs nothing."""
    from tvm.s_tir import meta_schedule as ms
    from tvm_ffi import structural_hash

    baseline_of = {structural_hash(r.workload.mod): r for r in baselines}
    done, logged = 0, 0
    for task in contexts:
        if stop.now():
            if say is not None:
                say(f"[mcc] recheck: stopped after {done} tasks")
            break
        workload = database.commit_workload(task.mod)
        records = list(database.get_top_k(workload, top_k))
        base = baseline_of.get(structural_hash(task.mod))
        if not records or base is None:
            continue
        schedules = _replay([*records, base])
        if schedules is None:
            continue
        searched, base_sch = schedules[:-1], schedules[-1]
        refused = set()
        if check_outputs:
            from mcc.tuning.outputs import disagreeing

            refused = set(disagreeing(searched, base_sch, target))
        wrong = [s for i, s in enumerate(searched) if i in refused]
        kept = [s for i, s in enumerate(searched) if i not in refused]
        medians = _time_again([*kept, base_sch], target, builder, runner, stop, rounds)
        if medians is None:
            continue
        failed = [(sch, ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True),
                   FAILED_SECS * 10) for sch in wrong]
        logged_workload = log_db.commit_workload(task.mod)
        for sch, info, secs in [*medians, *failed]:
            log_db.commit_tuning_record(ms.database.TuningRecord(
                sch.trace, logged_workload, [secs], target, info))
        done, logged = done + 1, logged + len(medians) + len(failed)
        if say is not None:
            best = min((secs for _, _, secs in medians[:-1]), default=None)
            timed = "none correct" if best is None else f"best record {best * 1e6:.1f} us"
            say(f"[mcc] recheck {task.task_name}: {timed}, default rules "
                f"{medians[-1][2] * 1e6:.1f} us (medians of {rounds} rounds)"
                + (f"; {len(wrong)} with wrong outputs refused" if wrong else ""))
    return logged


def _replay(records):
    """Each record's schedule, tagged as rechecked; None if a trace no longer replays."""
    from tvm import s_tir

    schedules = []
    for record in records:
        sch = s_tir.Schedule(record.workload.mod)
        try:
            record.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception:  # noqa: BLE001 - a trace that no longer replays: not rechecked
            return None
        sch.annotate(sch.get_sblock("root"), RECHECK_TAG, 1)
        schedules.append(sch)
    return schedules


def _time_again(schedules, target, builder, runner, stop, rounds):
    """[(schedule, args info, median secs)] per schedule, or None if any failed."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import remove_build_dir

    from mcc.targets import device_type

    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for sch in schedules])
    infos = [ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
             for sch in schedules]
    try:
        if any(b.error_msg is not None for b in built):
            return None
        device = device_type(target)
        secs = [[] for _ in schedules]
        for r in range(rounds):
            order = list(range(len(schedules)))
            if r % 2:
                order.reverse()  # drift in the machine's speed hits every schedule alike
            for i in order:
                if stop.now():
                    return None
                result = runner.run([ms.runner.RunnerInput(
                    built[i].artifact_path, device_type=device, args_info=infos[i])])[0]
                result = result.result()
                if result.error_msg is not None:
                    return None
                secs[i] += [float(s) for s in result.run_secs]
        return [(sch, info, statistics.median(s)) for sch, info, s in
                zip(schedules, infos, secs)]
    finally:
        for b in built:
            if b.error_msg is None:
                remove_build_dir(b.artifact_path)
