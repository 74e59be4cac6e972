"""The MetaSchedule pieces that make tuning resumable, bounded and visible.

* :class:`Stop` says when tuning must end: the time budget is spent, or Ctrl-C.
* :class:`SkipKnown` wraps the evolutionary search. MetaSchedule re-seeds its
  population from the database but only remembers candidates measured in the
  current process (upstream TODO in evolutionary_search.cc), so a resumed run
  would measure the best old candidates again. SkipKnown answers those from the
  log instead, shortens the last batch to what fits in the time left, and ends
  the search when :class:`Stop` says so.
* :func:`warm_start` trains the XGBoost cost model on the known records before
  the first new trial.
* :class:`PersistRecords` appends every measured batch to the on-disk log.
* :class:`ProgressCallback` reports trials, best latency and time left.
* :class:`GradientScheduler` is MetaSchedule's gradient task scheduler, except that
  each measured batch is joined (and so written to the log) at once. TVM's own
  GradientBased measures every task once before joining any, so a kill during that
  first round (tens of minutes on a real network here) lost all of it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
from tvm.s_tir.meta_schedule.runner import PyRunner
from tvm.s_tir.meta_schedule.search_strategy import PySearchStrategy
from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler

from mcc.schedule.records import FAILED_SECS


def trace_key(trace) -> str:
    """A candidate's identity: its schedule trace with every sampling decision.

    ``Trace.as_json`` mixes TVM and Python values: a decision the search sampled or
    mutated is an IntImm, the same decision read back from a log is an int, a flag may
    be a bool or 0/1. Both spellings become plain JSON numbers here; keyed on the raw
    mix, a resumed run took most logged candidates for new ones and measured them again.
    """
    return json.dumps(_plain(trace.as_json()), sort_keys=True)


def _plain(value):
    import tvm

    if isinstance(value, (bool, tvm.tirx.IntImm)):
        return int(value)
    if isinstance(value, tvm.tirx.FloatImm):
        return float(value)
    if isinstance(value, (int, float, str)) or value is None:
        return value
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(v) for v in value]
    return str(value)


class Stop:
    """When tuning must end: at ``deadline`` (on :attr:`clock`), or after Ctrl-C.

    Ctrl-C only sets a flag. A KeyboardInterrupt raised inside MetaSchedule's C++ loop
    is either swallowed (the task in hand is dropped and tuning goes on: a first test
    of ``mcc tune`` ran to its end after Ctrl-C) or aborts the process in
    ``std::terminate``. So the search stops at its next safe points instead: no new
    batch is generated, the unbuilt and unmeasured rest of the batch in flight is
    answered :data:`STOPPED` (the measured part is saved; failures caused by the
    interrupt, whose workers got the SIGINT too, are not), a candidate search in hand is
    left through the cost model (:func:`stoppable_cost_model`), and the caller raises
    :class:`TuneInterrupted`. A second Ctrl-C raises KeyboardInterrupt wherever the
    process is (less clean, but the log stays valid: a cut last line is dropped).

    Every reading of the time goes through :attr:`clock`, so that tests can run a budget
    on a virtual clock and check what it stops, whatever the machine's speed.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self.interrupted = False
        self.search_start: float | None = None  # when the search's first batch was asked for
        self.measured = 0  # candidates measured since then: paces the last batch
        self.spent = False  # the next batch would not fit in the time left

    def keep_aside(self, share: float) -> float:
        """Keep ``share`` of the time left for a last phase (mcc.tuning's recheck): the
        deadline moves that much earlier. Returns the seconds kept (0 without a budget)."""
        left = self.time_left()
        if left is None or not share:
            return 0.0
        self.deadline -= left * share
        return left * share

    def resume_after_reserve(self, seconds: float) -> None:
        """Give back what :meth:`keep_aside` kept, for the last phase: the deadline
        moves later and a batch that did not fit no longer counts."""
        if self.deadline is not None and seconds:
            self.deadline += seconds
            self.spent = False

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def now(self) -> bool:
        left = self.time_left()
        return self.interrupted or self.spent or (left is not None and left <= 0)

    def trials_that_fit(self, wanted: int) -> int:
        """How many of ``wanted`` new candidates fit in the time left, at the pace
        measured so far (build + run + search per candidate); all of them without a
        budget or a pace yet."""
        left = self.time_left()
        if left is None or not self.measured or self.search_start is None:
            return wanted
        pace = (self.clock() - self.search_start) / self.measured
        fits = max(0, min(wanted, int(left / pace)))
        self.spent = fits == 0
        return fits

    @contextmanager
    def on_ctrl_c(self):
        """Within the block, Ctrl-C (SIGINT) sets :attr:`interrupted` (main thread only;
        elsewhere signals cannot be caught and nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self.interrupted:  # asked twice: stop at once
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.interrupted = True

        signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


# error text of candidates left unbuilt / unmeasured because Stop fired: not failures,
# so they are neither logged nor counted
STOPPED = "mcc: not measured, tuning stopped"


def stopped(error_msg) -> bool:
    return error_msg is not None and str(error_msg).startswith(STOPPED)


@derived_object
class StoppableRunner(PyRunner):
    """Measures a batch one candidate at a time (as LocalRunner does anyway) and answers
    the rest as :data:`STOPPED` once :class:`Stop` fires. Without it Ctrl-C waited for
    the whole batch, every candidate after the interrupt in a freshly started worker
    (23 s on MobileNetV2)."""

    def __init__(self, inner, stop):
        super().__init__()
        self.inner = inner
        self.stop = stop

    def run(self, runner_inputs):
        from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

        out = []
        for runner_input in runner_inputs:
            if self.stop.now():
                out.append(LocalRunnerFuture(res=None, error_message=STOPPED))
            else:
                out.extend(self.inner.run([runner_input]))
        return out

    def shutdown(self) -> None:
        """Kill and reap the measuring worker. LocalRunner never does: its worker was
        left to notice on its own that mcc had exited, and outlived it after Ctrl-C."""
        pool = getattr(self.inner, "pool", None)
        if pool is not None:
            pool.shutdown()


class SearchAborted(Exception):
    """Raised by :func:`stoppable_cost_model` to leave a candidate search after Ctrl-C."""


def stoppable_cost_model(stop, **xgb_options):
    """MetaSchedule's XGBoost cost model, except that after Ctrl-C its next prediction
    raises :class:`SearchAborted`. The evolutionary search asks for one per genetic
    iteration, from the main thread, so this unwinds the search's C++ back to
    :class:`SkipKnown`, which ends the task. Without it Ctrl-C waited for the candidate
    generation in hand (13.5 s measured on MobileNetV2 on a busy machine)."""
    from tvm.s_tir.meta_schedule.cost_model import XGBModel

    @derived_object
    class StoppableXGBModel(XGBModel._cls):
        def predict(self, context, candidates):
            if stop.interrupted:
                raise SearchAborted("tuning interrupted")
            return super().predict(context, candidates)

    return StoppableXGBModel(**xgb_options)


class TuneInterrupted(KeyboardInterrupt):
    """Tuning stopped by Ctrl-C at a safe point; the message says what was kept."""


def _workload_key(mod) -> int:
    from tvm_ffi import structural_hash

    return structural_hash(mod)


def known_by_workload(records) -> dict[int, dict[str, list]]:
    """The records' latencies by workload hash, then by trace key: worked out once for
    all tasks, where each task (and each clone of it) used to hash the whole log again."""
    out: dict[int, dict[str, list]] = {}
    for record in records:
        by_trace = out.setdefault(_workload_key(record.workload.mod), {})
        by_trace[trace_key(record.trace)] = record.run_secs
    return out


@derived_object
class SkipKnown(PySearchStrategy):
    """An evolutionary search that never re-measures a candidate the log already holds."""

    def __init__(self, inner, known_by_workload, stop, stats):
        self.inner = inner
        self.known_by_workload = known_by_workload  # from :func:`known_by_workload`
        self.stop = stop  # a Stop, shared across tasks
        self.stats = stats  # shared across tasks: {"skipped": n}
        self.known = {}
        self.pending = None

    def _initialize_with_tune_context(self, context) -> None:
        self.inner._initialize_with_tune_context(context)
        self.known = self.known_by_workload.get(_workload_key(context.mod), {})

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None,
                   cost_model=None) -> None:
        self.inner.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database,
                              cost_model)

    def post_tuning(self) -> None:
        self.inner.post_tuning()

    def generate_measure_candidates(self):
        if self.stop.search_start is None:
            self.stop.search_start = self.stop.clock()
        for _ in range(16):  # bounded: a search space smaller than the log ends here
            if self.stop.now():
                return None
            try:
                candidates = self.inner.generate_measure_candidates()
            except Exception:  # SearchAborted, as it comes back through TVM's FFI
                if self.stop.interrupted:
                    return None
                raise
            if candidates is None or self.stop.now():
                return None
            candidates = list(candidates)  # an FFI array: new Python wrappers per access
            known = [self.known.get(trace_key(c.sch.trace)) for c in candidates]
            fresh = [i for i, secs in enumerate(known) if secs is None]
            self.stats["skipped"] += len(candidates) - len(fresh)
            if fresh:
                # the last batch before the deadline: only what fits in the time left
                fits = self.stop.trials_that_fit(len(fresh))
                if fits == 0:
                    return None
                keep = [i for i, secs in enumerate(known)
                        if secs is not None or i in fresh[:fits]]
                self.pending = ([candidates[i] for i in keep], [known[i] for i in keep])
                return [candidates[i] for i in fresh[:fits]]
            self.inner.notify_runner_results(
                list(candidates), [ms.runner.RunnerResult(secs, None) for secs in known])
        return None

    def notify_runner_results(self, measure_candidates, results) -> None:
        candidates, known = self.pending
        self.pending = None
        fresh = iter(results)
        merged = [next(fresh) if secs is None else ms.runner.RunnerResult(secs, None)
                  for secs in known]
        self.inner.notify_runner_results(candidates, merged)

    def clone(self):
        return SkipKnown(self.inner.clone(), self.known_by_workload, self.stop, self.stats)


def warm_start(cost_model, contexts, database) -> int:
    """Train ``cost_model`` on the records ``database`` holds for each task; return how many."""
    used = 0
    for ctx in contexts:
        records = database.get_top_k(database.commit_workload(ctx.mod), 10**6)
        if not records:
            continue
        candidates = [r.as_measure_candidate() for r in records]
        results = [ms.runner.RunnerResult(r.run_secs, None) for r in records]
        cost_model.update(ctx, candidates, results)
        used += len(records)
    return used


@derived_object
class PersistRecords(PyMeasureCallback):
    """Append each measured batch to the on-disk JSON log (failures too, so that a
    resumed run does not retry them; but not after Ctrl-C, which kills the build and
    run workers of the batch in flight: those failures are the interrupt's)."""

    def __init__(self, log_db, stop=None):
        self.log_db = log_db
        self.stop = stop
        self.saved = 0

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        ctx = task_scheduler.tasks_[task_id].ctx
        workload = self.log_db.commit_workload(ctx.mod)
        interrupted = self.stop is not None and self.stop.interrupted
        for cand, built, ran in zip(measure_candidates, builder_results, runner_results):
            secs = ran.run_secs if built.error_msg is None and ran.error_msg is None else None
            if secs is None and (interrupted or stopped(built.error_msg)
                                 or stopped(ran.error_msg)):
                continue
            self.saved += 1
            self.log_db.commit_tuning_record(ms.database.TuningRecord(
                cand.sch.trace, workload, secs or [FAILED_SECS * 10], ctx.target,
                cand.args_info))


@derived_object
class ProgressCallback(PyMeasureCallback):
    """One line per measured batch: trials, this task's best, the model estimate, time left."""

    def __init__(self, emit, names, weights, budget_trials, stop, history):
        self.emit = emit
        self.history = history  # task id -> best latency after each batch, for the scheduler
        self.names = names
        self.weights = weights
        self.budget_trials = budget_trials
        self.stop = stop
        self.best = {}
        self.trials = 0
        self.errors = 0

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        done = [(b, r) for b, r in zip(builder_results, runner_results)
                if not stopped(b.error_msg) and not stopped(r.error_msg)]
        self.trials += len(done)
        self.stop.measured += len(done)
        for built, ran in done:
            if built.error_msg is not None or ran.error_msg is not None:
                self.errors += 1
                continue
            secs = sum(float(s) for s in ran.run_secs) / len(ran.run_secs)
            if secs < self.best.get(task_id, float("inf")):
                self.best[task_id] = secs
        self.history.setdefault(task_id, []).append(self.best.get(task_id, 1e100))
        if self.emit is None:
            return
        total = sum(self.weights[i] * s for i, s in self.best.items())
        budget = "" if self.budget_trials >= 10**9 else f"/{self.budget_trials}"
        left = ""
        if self.stop.deadline is not None:
            left = f"  {max(0.0, self.stop.time_left()) / 60:.1f} min left"
        best = self.best.get(task_id)
        best_text = f"{best * 1e6:.1f} us" if best is not None else "no valid candidate yet"
        self.emit(f"[mcc] tune     trials {self.trials}{budget}  task {task_id + 1}/"
                  f"{len(self.names)} {self.names[task_id]}: best {best_text}  "
                  f"tuned tasks sum {total * 1e6:.1f} us  errors {self.errors}{left}")


@derived_object
class GradientScheduler(PyTaskScheduler):
    """Every task once, then the task whose weighted latency is falling fastest (the
    gradient rule of MetaSchedule's GradientBased: alpha * recent slope + (1 - alpha) *
    best / batches), joining finished batches before every choice."""

    def __init__(self, weights, history, stop, alpha=0.2, window=3):
        super().__init__()
        self.stop = stop
        self.weights = weights
        self.history = history  # filled by ProgressCallback as batches are joined
        self.alpha = alpha
        self.window = window
        self.started = set()

    def next_task_id(self) -> int:
        outer = self._outer()
        records = outer.tasks_
        for i in range(len(records)):
            outer.touch_task(i)  # joins finished batches: callbacks persist their records
        alive = [i for i in range(len(records)) if not records[i].is_terminated]
        if not alive or self.stop.now():  # MetaSchedule then joins the batches in flight
            return -1
        unseen = [i for i in alive if i not in self.started]
        choice = unseen[0] if unseen else max(alive, key=self._gradient)
        if records[choice].runner_futures is not None:
            outer.join_running_task(choice)
        self.started.add(choice)
        return choice

    def _gradient(self, task_id: int) -> float:
        hist = self.history.get(task_id) or [1e100]
        best, n, w = hist[-1], len(hist), self.window
        slope = (hist[-1 - w] - best) / w if n >= 1 + w else 0.0
        return (self.alpha * slope + (1 - self.alpha) * best / n) * self.weights[task_id]
