"""``mcc tune``: MetaSchedule auto-tuning that resumes, respects targets and shows progress.

    import   the model, through the same graph steps as ``mcc compile`` with the same
             options (prune, quantize, layout, input shapes: ``mcc.driver.lower``), so
             the tasks are the kernels that compile builds
    tasks    one MetaSchedule task per fused kernel (weighted by how often it runs)
    resume   records already in the log for this target: the cost model is trained
             on them and their candidates are never measured again
    tune     MetaSchedule's gradient task scheduler + XGBoost cost model spends the
             trials where they cut end-to-end latency most; each measured batch is
             appended to ``<log>/<family>/`` at once (a kill loses at most one batch)

Measurement runs locally, or on remote devices through TVM's RPC tracker
(``rpc_tracker``/``rpc_key``: MetaSchedule's RPCRunner) while building locally.

A time budget covers the whole run (import, calibration, baselines, search); Ctrl-C
stops at the next safe point (mcc.tuning.search.Stop) and raises TuneInterrupted.

Tuning may import the driver (the same graph steps as a compile), frontends,
mcc.passes, schedule, build, runtime and mcc.targets; only the API verbs and the
schedule stage (which reads its records through mcc.tuning.log) import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcc.driver.progress import Stages
from mcc.errors import MccError, first_line
from mcc.schedule.records import (
    database_dirs,
    describe_key,
    materialize,
    mean_secs,
    records_for_target,
    target_key,
)
from mcc.targets.kinds import kind_of
from mcc.tuning.log import open_log

DEFAULT_TRIALS_PER_TASK = 64  # used when neither trials nor a time budget is given


@dataclass(frozen=True)
class SearchOptions:
    """Evolutionary-search knobs. The defaults suit real models; tests shrink them."""

    trials_per_iter: int = 64
    population: int = 512
    genetic_iters: int = 4
    build_timeout: float = 60.0
    run_timeout: float = 30.0
    repeat: int = 1
    min_repeat_ms: int = 50
    # CPU targets: each timed run starts with the kernel's weights flushed from the caches
    cache_flush: bool = True
    flush_repeat: int = 10
    # at the end, each task's best records and its baseline timed again (mcc.tuning.recheck);
    # with a time budget, this share of it is kept for that; 0 records: no recheck
    recheck_top: int = 3
    recheck_rounds: int = 3
    recheck_share: float = 0.05
    seed: int | None = None
    build_workers: int | None = None  # default: one per core of the target


@dataclass
class TuneReport:
    log_dir: str
    target: str
    tasks: int
    trials: int  # new measurements made by this run
    records_before: int
    records_after: int
    skipped_known: int  # candidates proposed again by the search and not re-measured
    refused: dict[str, int]
    seconds: float
    best_us: dict[str, float] = field(default_factory=dict)  # task name -> best latency
    rechecked: int = 0  # records timed again at the end (mcc.tuning.recheck), logged anew

    def lines(self) -> list[str]:
        out = [f"tuned {self.tasks} tasks for {self.target}: {self.trials} new trials in "
               f"{self.seconds:.0f} s ({self.skipped_known} known candidates not re-measured)",
               f"log {self.log_dir}: {self.records_before} -> {self.records_after} records"
               + (f" ({self.rechecked} of them rechecked timings)" if self.rechecked else "")]
        if self.refused:
            out.append("ignored records for other targets: " + ", ".join(
                f"{n} for {describe_key(k)}" for k, n in sorted(self.refused.items())))
        return out

    def to_json(self) -> dict:
        return {"log_dir": self.log_dir, "target": self.target, "tasks": self.tasks,
                "trials": self.trials, "records_before": self.records_before,
                "records_after": self.records_after, "skipped_known": self.skipped_known,
                "refused": self.refused, "seconds": round(self.seconds, 1),
                "best_us": self.best_us, "rechecked": self.rechecked}


def parse_tracker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MccError(f"--rpc-tracker '{text}' must be HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


def tune_model(model, config, *, trials=None, time_budget=None, tuning_log="tuning_logs",
               example_inputs=None, rpc_tracker=None, rpc_key=None,
               search: SearchOptions | None = None, progress=None) -> TuneReport:
    """Tune ``model`` for ``config`` (a CompileConfig: target and the options that shape
    the kernels); see the module docstring."""
    from mcc.tuning.search import Stop

    target = config.target
    search = search or SearchOptions()
    if trials is not None and trials < 1:
        raise MccError("--trials must be at least 1")
    if time_budget is not None and time_budget <= 0:
        raise MccError("--time-budget must be a positive number of minutes")
    if (rpc_tracker is None) != (rpc_key is None):
        raise MccError("--rpc-tracker and --rpc-key go together")
    if rpc_tracker is not None:
        parse_tracker(rpc_tracker)
    elif not target.runs_on_host():
        raise MccError(f"target {target.name} ({target.arch}) cannot run on this machine: "
                       "measure on a device with --rpc-tracker HOST:PORT --rpc-key KEY")
    start = Stop.clock()
    stop = Stop(start + time_budget * 60 if time_budget else None)
    log_dir = Path(tuning_log) / target.family
    with stop.on_ctrl_c():
        return _tune(model, config, stop, start, trials, log_dir, example_inputs,
                     rpc_tracker, rpc_key, search, Stages(progress))


def _tune(model, config, stop, start, trials, log_dir, example_inputs, rpc_tracker, rpc_key,
          search, stages) -> TuneReport:
    from mcc.driver import lower
    from mcc.frontends import import_model
    from mcc.tuning.workers import load_tensor_intrinsics

    target = config.target
    tvm_target = target.tvm_target()
    load_tensor_intrinsics(target.intrinsics_key)

    with stages.stage("import") as st:
        imported = import_model(model, config.input_shapes, example_inputs, config.bind)
        st.detail = ", ".join(f"{t.name}: {t.dtype}{t.shape_text()}" for t in imported.inputs)
    _check_interrupt(stop, 0, log_dir)
    mod, *_ = lower(imported, config, tvm_target, stages)
    _check_interrupt(stop, 0, log_dir)

    with stages.stage("tasks") as st:
        tasks = _extract_tasks(mod, tvm_target)
        if not tasks:
            raise MccError("the model has no kernels to tune")
        st.detail = f"{len(tasks)} tasks"

    with stages.stage("resume") as st:
        found = records_for_target(database_dirs(log_dir, target.family)[-1:], tvm_target)
        known = materialize(found.records)
        st.detail = (f"{len(known)} records for this target in {log_dir}"
                     + (f"; ignored {found.refused_text()}" if found.refused else ""))
    _check_interrupt(stop, 0, log_dir)

    if trials is None:
        trials = (10**9 if stop.deadline else DEFAULT_TRIALS_PER_TASK * len(tasks))
    with stages.stage("tune") as st:
        # a CPU module measured here can also be run here: records are checked against the
        # default schedule's outputs before the recheck keeps them (mcc.tuning.outputs)
        check_outputs = rpc_tracker is None and target.checks_outputs_in_tuning
        result = _run_search(mod, tasks, tvm_target, target.arch, known, log_dir, trials,
                             stop, search, rpc_tracker, rpc_key, stages, check_outputs)
        st.detail = f"{result['trials']} trials"
    _check_interrupt(stop, result["saved"], log_dir)
    if stop.deadline is not None and stop.now():
        stages.say(f"[mcc] time budget spent after {stop.clock() - start:.0f} s")

    return TuneReport(str(log_dir), describe_key(target_key(tvm_target)), len(tasks),
                      result["trials"], len(known),
                      len(records_for_target([log_dir], tvm_target).records)
                      if result["saved"] else len(known),
                      result["skipped"], found.refused, stop.clock() - start,
                      result["best_us"], result["rechecked"])


def _check_interrupt(stop, saved: int, log_dir: Path) -> None:
    from mcc.tuning.search import TuneInterrupted

    if stop.interrupted:
        raise TuneInterrupted(f"{saved} new records saved in {log_dir}; run the same command "
                              "again to continue from them")


def _extract_tasks(mod, target):
    """The kernels to tune, their constant weights marked layout-free as ``mcc.schedule``
    marks them: a record may then repack a weight once, at compile time (MetaSchedule's
    RewriteLayout), and applies to the kernel exactly as a compile sees it."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    try:
        mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
        tasks = ms.relax_integration.extract_tasks(mod, target)
    except Exception as err:
        raise MccError(f"task extraction failed: {first_line(err)}") from None
    return [t for t in tasks if not t.mod.attrs or not t.mod.attrs.get("tirx.is_scheduled")]


def _run_search(mod, tasks, target, arch, known_records, log_dir, trials, stop, search,
                rpc_tracker, rpc_key, stages, check_outputs=False) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from mcc.tuning.workers import make_builder

    num_cores = int(target.attrs.get("num-cores", 0) or 0) or ms.utils.cpu_count(logical=False)
    builder = make_builder(arch, max_workers=search.build_workers or num_cores,
                           timeout_sec=search.build_timeout, stop=stop)
    runner = _runner(search, kind_of(target), rpc_tracker, rpc_key, stop)
    try:
        return _search(mod, tasks, target, num_cores, known_records, log_dir, trials, stop,
                       search, builder, runner, stages, check_outputs)
    finally:
        builder.shutdown()
        if hasattr(runner, "shutdown"):
            runner.shutdown()


def _search(mod, tasks, target, num_cores, known_records, log_dir, trials, stop, search,
            builder, runner, stages, check_outputs=False) -> dict:
    from tvm.s_tir import meta_schedule as ms

    from mcc.schedule.records import is_baseline_trace_json, is_rechecked_trace_json
    from mcc.tuning.baseline import measure_baselines
    from mcc.tuning.recheck import recheck
    from mcc.tuning.search import (
        GradientScheduler,
        PersistRecords,
        ProgressCallback,
        SkipKnown,
        known_by_workload,
        stoppable_cost_model,
        warm_start,
    )

    log_db = open_log(log_dir)
    # the default rules' schedules, measured first: the floor tuning must beat
    baselines = measure_baselines(tasks, mod, target, builder, runner, known_records, log_db,
                                  stages.say, stop, chunk=search.build_workers or num_cores)
    known_records = [*known_records, *baselines]
    # each record's trace serialised once: tags say which are baselines / rechecks
    traces = [r.trace.as_json() for r in known_records]
    known_baselines = [r for r, t in zip(known_records, traces)
                       if is_baseline_trace_json(t) and not is_rechecked_trace_json(t)]
    if stop.now():
        return {"trials": 0, "saved": len(baselines), "skipped": 0, "best_us": {},
                "rechecked": 0}
    inner = ms.search_strategy.EvolutionarySearch(
        population_size=search.population, genetic_num_iters=search.genetic_iters,
        init_min_unmeasured=min(50, search.population))
    seeds = ms.utils.fork_seed(search.seed, n=len(tasks))
    loggers = [_quiet_logger(f"mcc.tune.task{i}") for i in range(len(tasks))]
    stats = {"skipped": 0}
    known = known_by_workload(known_records)
    contexts = []
    for task, logger, seed in zip(tasks, loggers, seeds):
        contexts.append(ms.TuneContext(
            mod=task.dispatched[0], target=task.target, space_generator="post-order-apply",
            search_strategy=SkipKnown(inner, known, stop, stats),
            task_name=task.task_name, logger=logger, rand_state=seed,
            num_threads=num_cores).clone())
    weights = [float(t.weight) for t in tasks]

    # The baselines stay out of the search's database: the evolutionary search would
    # replay their traces, tag included, and a mutated candidate would pass for one.
    database = ms.database.MemoryDatabase(module_equality="structural")
    for record, trace_json in zip(known_records, traces):
        if is_baseline_trace_json(trace_json) or is_rechecked_trace_json(trace_json):
            continue
        workload = database.commit_workload(record.workload.mod)
        database.commit_tuning_record(ms.database.TuningRecord(
            record.trace, workload, record.run_secs, record.target, record.args_info))
    cost_model = stoppable_cost_model(stop, num_tuning_cores=num_cores)
    warmed = warm_start(cost_model, contexts, database)
    if warmed:
        stages.say(f"[mcc] cost model warm-started on {warmed} known records")

    history: dict[int, list[float]] = {}
    progress = ProgressCallback(stages.emit, [t.task_name for t in tasks], weights, trials,
                                stop, history)
    persist = PersistRecords(log_db, stop)
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"), persist, progress]
    reserve = stop.keep_aside(search.recheck_share if search.recheck_top else 0.0)
    GradientScheduler(weights, history, stop).tune(
        tasks=contexts, task_weights=weights, max_trials_global=trials,
        max_trials_per_task=trials, num_trials_per_iter=search.trials_per_iter,
        builder=builder, runner=runner, measure_callbacks=callbacks, database=database,
        cost_model=cost_model)
    rechecked = 0
    if search.recheck_top and not stop.interrupted:
        stop.resume_after_reserve(reserve)
        rechecked = recheck(contexts, database, known_baselines, target, builder, runner,
                            log_db, stop, stages.say, top_k=search.recheck_top,
                            rounds=search.recheck_rounds, check_outputs=check_outputs)
    best = {}
    for ctx in contexts:
        top = database.get_top_k(database.commit_workload(ctx.mod), 1)
        if top:
            best[ctx.task_name] = round(mean_secs(top[0]) * 1e6, 2)
    return {"trials": progress.trials, "saved": len(baselines) + persist.saved + rechecked,
            "skipped": stats["skipped"], "best_us": best, "rechecked": rechecked}


def _quiet_logger(name: str):
    """MetaSchedule's per-task log (INFO/DEBUG chatter): kept out of the user's terminal;
    mcc's own progress lines say what matters. MCC_DEBUG=1 shows it."""
    import logging
    import os

    logger = logging.getLogger(name)
    logger.propagate = False
    if not logger.handlers:
        debug = bool(os.environ.get("MCC_DEBUG"))
        logger.addHandler(logging.StreamHandler() if debug else logging.NullHandler())
        logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    return logger


def evaluator_config(search: SearchOptions, kind):
    """How each candidate is timed. On CPUs every timed run starts with the kernel's
    arguments other than its first input flushed from the caches, as its weights are in a
    whole network whose weights outgrow them. Timed hot, a kernel rewards schedules that
    re-read weights: six searched ResNet-50 kernels were within 7% of mcc's rules or faster
    hot, and one of them 1.7x slower than the rules cold, as the network runs it."""
    from tvm.s_tir import meta_schedule as ms

    if search.cache_flush and kind_of(kind).cache_flush:
        return ms.runner.EvaluatorConfig(number=1, repeat=search.flush_repeat,
                                         min_repeat_ms=0, enable_cpu_cache_flush=True)
    return ms.runner.EvaluatorConfig(number=1, repeat=search.repeat,
                                     min_repeat_ms=search.min_repeat_ms,
                                     enable_cpu_cache_flush=False)


def _runner(search: SearchOptions, kind, rpc_tracker, rpc_key, stop):
    from tvm.s_tir import meta_schedule as ms

    from mcc.tuning.search import StoppableRunner

    evaluator = evaluator_config(search, kind)
    if rpc_tracker is None:
        return StoppableRunner(ms.runner.LocalRunner(timeout_sec=search.run_timeout,
                                                     evaluator_config=evaluator), stop)
    host, port = parse_tracker(rpc_tracker)
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=rpc_key,
                                 session_timeout_sec=int(search.run_timeout))
    try:
        return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator)
    except Exception as err:
        raise MccError(f"cannot reach RPC tracker {host}:{port} with key '{rpc_key}': "
                       f"{first_line(err)}") from None
