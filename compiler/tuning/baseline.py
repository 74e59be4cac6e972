"""Default-rule baselines: tuning starts from mcc's own schedules and never falls below them.

A short MetaSchedule search on a small machine often finds kernels slower than
mcc's default rules (``mcc.schedule.rules``), and records take precedence at
compile time. So ``mcc tune`` first schedules every task with the default rules,
measures that schedule with the search's own builder and runner, and commits it
to the log as an ordinary TuningRecord, tagged by a root-block annotation
(:data:`BASELINE_TAG`) in its trace. (It is kept out of the search's database:
the evolutionary search would replay the trace, tag and all, into new candidates.)

At compile time :func:`prefer_rules` keeps a tuned record only where it is at
least as fast as the baseline of its workload; baseline records themselves are
never applied: the default rules run instead, exactly as without a log (with the
weight repacking they do on constants).
"""

from __future__ import annotations

from mcc.schedule.records import (
    BASELINE_TAG,
    is_baseline_trace_json,
    kernel_identity,
)


def layout_free_params(relax_mod) -> dict:
    """Structural hash of each kernel (attributes that differ stripped) -> the indices of its
    constant parameters, as ``relax.transform.AttachAttrLayoutFreeBuffers`` marks them at
    compile time. The default rules repack such weights, so a task must carry the same
    attribute when its baseline is scheduled, or the baseline would measure another kernel."""
    from tvm import relax, tirx

    attached = relax.transform.AttachAttrLayoutFreeBuffers()(relax_mod)
    out = {}
    for _, func in attached.functions_items():
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None:
            free = func.attrs.get("layout_free_buffers")
            if free is not None and len(free):
                out[kernel_identity(func)] = [int(i) for i in free]
    return out


def default_schedule(func, target, free):
    """The default rules' schedule of one task's PrimFunc, tagged; None if no rule fits.
    mcc's int8 kernels get their int8 schedule (VNNI where the CPU has it), as at compile."""
    from mcc.schedule.rules import rules_for

    int8 = _int8_schedule(func, target)
    if int8 is not None:
        return int8
    if free:
        func = func.with_attr("layout_free_buffers", free)
    with target:
        for rule in rules_for(target):
            try:
                sch = rule.apply(func, target, False)
            except Exception:  # a rule that cannot handle this kernel: try the next
                continue
            if isinstance(sch, list):
                sch = sch[0] if sch else None
            if sch is not None:
                sch.annotate(sch.get_sblock("root"), BASELINE_TAG, 1)
                return sch
    return None


def _int8_schedule(func, target):
    """mcc.schedule.rules.int8's schedule of an int8 kernel as a tagged Schedule (its trace holds
    only the tag: baselines are measured, never replayed), or None for other kernels."""
    import tvm
    from tvm import s_tir

    from mcc.passes.int8_kernels import CONV_BLOCK
    from mcc.schedule.rules.int8 import schedule_int8

    if CONV_BLOCK not in func.script():
        return None
    scheduled = schedule_int8(tvm.IRModule({"main": func}), target)["main"]
    if scheduled.attrs is None or not scheduled.attrs.get("tirx.is_scheduled"):
        return None
    sch = s_tir.Schedule(scheduled)
    sch.annotate(sch.get_sblock("root"), BASELINE_TAG, 1)
    return sch


def measure_baselines(tasks, relax_mod, target, builder, runner, known_records, log_db,
                      say=None, stop=None, chunk: int = 2) -> list:
    """Measure the default-rule schedule of each task (MetaSchedule ExtractedTask) without
    one in ``known_records``; commit each to ``log_db`` and return the new TuningRecords.

    Tasks go ``chunk`` at a time (one per build worker), heaviest first, and a ``stop``
    (mcc.tuning.search.Stop) that fires between chunks ends the phase: the time budget
    counts it (a MobileNetV2's 34 baselines take about 20 s), Ctrl-C interrupts it, and a
    resumed run measures the rest."""
    from tvm_ffi import structural_hash

    have = {structural_hash(r.workload.mod) for r in known_records
            if is_baseline_trace_json(r.trace.as_json())}
    free_of = layout_free_params(relax_mod)
    todo = []
    for task in sorted(tasks, key=lambda t: -float(t.weight) * _flops(t.dispatched[0])):
        if structural_hash(task.dispatched[0]) in have:
            continue
        func = task.dispatched[0]["main"]
        sch = default_schedule(func, target, free_of.get(kernel_identity(func)))
        if sch is not None:
            todo.append((task, sch))
    out = []
    for start in range(0, len(todo), max(1, chunk)):
        if stop is not None and stop.now():
            if say is not None:
                say(f"[mcc] baselines: {len(todo) - start} of {len(todo)} left for a later run"
                    f" ({'interrupted' if stop.interrupted else 'time budget spent'})")
            break
        out += _measure(todo[start:start + max(1, chunk)], target, builder, runner, log_db,
                        say, stop)
    return out


def _flops(mod) -> float:
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(mod))
    except Exception:  # noqa: BLE001  an op the estimator does not know: last
        return 0.0


def _measure(todo, target, builder, runner, log_db, say, stop) -> list:
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import remove_build_dir

    from mcc.schedule.records import FAILED_SECS
    from mcc.targets import device_type
    from mcc.tuning.search import stopped

    built = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, sch in todo])
    args = [ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            for _, sch in todo]
    device = device_type(target)
    futures = {}
    for i, (res, info) in enumerate(zip(built, args)):
        if res.error_msg is None:
            futures[i] = runner.run([ms.runner.RunnerInput(
                res.artifact_path, device_type=device, args_info=info)])[0]
    out = []
    for i, (task, sch) in enumerate(todo):
        secs, cut = None, stopped(built[i].error_msg)
        if i in futures:
            result = futures[i].result()
            if result.error_msg is None:
                secs = [float(s) for s in result.run_secs]
            cut = cut or stopped(result.error_msg)
            remove_build_dir(built[i].artifact_path)
        if secs is None and (cut or (stop is not None and stop.interrupted)):
            continue  # not measured (or its worker killed by Ctrl-C): left to the next run
        workload = log_db.commit_workload(task.dispatched[0])
        record = ms.database.TuningRecord(sch.trace, workload, secs or [FAILED_SECS * 10],
                                          target, args[i])
        log_db.commit_tuning_record(record)
        out.append(record)
        if say is not None:
            text = f"{sum(secs) / len(secs) * 1e6:.1f} us" if secs else "failed to run"
            say(f"[mcc] baseline {task.task_name}: default rules {text}")
    return out
