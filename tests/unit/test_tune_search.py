"""SkipKnown: candidates already in the log are answered from it, never measured again;
and tuning-log target keys (no tuning, no build)."""

from __future__ import annotations

import json

import pytest

from mcc.tuning.search import SkipKnown, Stop


class Trace:
    def __init__(self, name):
        self.name = name

    def as_json(self):
        return [["Sample", self.name]]


class Candidate:
    def __init__(self, name):
        self.sch = type("Sch", (), {"trace": Trace(name)})()
        self.name = name


class FakeSearch:
    """Yields the given batches; records what it is told about results."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.told = []

    def generate_measure_candidates(self):
        return [Candidate(n) for n in self.batches.pop(0)] if self.batches else None

    def notify_runner_results(self, candidates, results):
        self.told.append([(c.name, r.run_secs) for c, r in zip(candidates, results)])


def test_skip_known_answers_known_candidates_from_the_log():
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    from mcc.tuning.search import trace_key

    inner = FakeSearch([["a", "b", "c"], ["b", "d"], ["e"]])
    stats = {"skipped": 0}
    strategy = SkipKnown._cls(inner, {}, Stop(), stats)  # the Python object behind the FFI one
    strategy.known = {trace_key(Trace("b")): [2.0], trace_key(Trace("d")): [3.0]}

    fresh = strategy.generate_measure_candidates()
    assert [c.name for c in fresh] == ["a", "c"]  # b is known: not sent to the runner
    strategy.notify_runner_results(fresh, [RunnerResult([1.0], None), RunnerResult([4.0], None)])
    told = inner.told[0]
    assert [n for n, _ in told] == ["a", "b", "c"]  # the search sees all, in order
    assert [float(s[0]) for _, s in told] == [1.0, 2.0, 4.0]  # b with its logged latency

    # a batch of only known candidates is answered at once; the search moves on
    fresh = strategy.generate_measure_candidates()
    assert [c.name for c in fresh] == ["e"]
    assert [n for n, _ in inner.told[1]] == ["b", "d"]
    assert stats["skipped"] == 3
    strategy.notify_runner_results(fresh, [RunnerResult([5.0], None)])
    assert strategy.generate_measure_candidates() is None  # the search has finished


def test_skip_known_stops_at_the_deadline():
    strategy = SkipKnown._cls(FakeSearch([["a"]]), {}, Stop(deadline=0.0), {"skipped": 0})
    assert strategy.generate_measure_candidates() is None


def test_skip_known_stops_after_ctrl_c():
    stop = Stop()
    strategy = SkipKnown._cls(FakeSearch([["a"], ["b"]]), {}, stop, {"skipped": 0})
    assert [c.name for c in strategy.generate_measure_candidates()] == ["a"]
    stop.interrupted = True
    assert strategy.generate_measure_candidates() is None


def test_last_batch_shrinks_to_the_time_left():
    from tvm.s_tir.meta_schedule.runner import RunnerResult

    class FFISearch(FakeSearch):
        """Candidates as TVM returns them: an array whose every access makes new
        Python wrapper objects."""

        def generate_measure_candidates(self):
            names = self.batches.pop(0)

            class Array:
                def __iter__(self):
                    return iter([Candidate(n) for n in names])

            return Array()

    inner = FFISearch([["a", "b", "c", "d"]])
    stop = Stop(deadline=130.0)
    stop.clock = lambda: 100.0  # a fixed clock: the test does not depend on the machine
    stop.search_start, stop.measured = 80.0, 2  # 10 s per candidate so far
    strategy = SkipKnown._cls(inner, {}, stop, {"skipped": 0})
    fresh = strategy.generate_measure_candidates()
    assert [c.name for c in fresh] == ["a", "b", "c"]  # 30 s left
    strategy.notify_runner_results(fresh, [RunnerResult([1.0], None)] * len(fresh))
    assert [n for n, _ in inner.told[0]] == [c.name for c in fresh]


def test_ctrl_c_sets_the_flag_and_a_second_one_raises():
    import signal

    import pytest

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run in the background
    stop = Stop()
    with stop.on_ctrl_c():
        signal.raise_signal(signal.SIGINT)
        assert stop.interrupted
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("spec, same", [
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 8}, True),
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake", "num-cores": 2}, False),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "znver4", "num-cores": 2}, False),
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4",
      "mattr": ["+avx512f"], "num-cores": 2}, False),
])
def test_target_key_ignores_only_core_count(spec, same):
    import tvm

    from mcc.schedule.records import describe_key, target_key

    base = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4",
                              "num-cores": 2})
    assert (target_key(tvm.target.Target(spec)) == target_key(base)) is same
    assert describe_key(target_key(base)) == "llvm x86_64-linux-gnu znver4"
    assert json.loads(target_key(base))["kind"] == "llvm"


def test_runner_answers_the_rest_of_a_batch_as_stopped_after_ctrl_c():
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

    from mcc.tuning.search import StoppableRunner, stopped

    stop = Stop()

    class Inner:
        ran = []

        def run(self, inputs):
            self.ran.extend(inputs)
            stop.interrupted = True  # Ctrl-C while the first candidate runs
            return [LocalRunnerFuture(res=[1.0], error_message=None) for _ in inputs]

    inner = Inner()
    futures = StoppableRunner._cls(inner, stop).run(["a", "b", "c"])
    assert inner.ran == ["a"]
    results = [f.result() for f in futures]
    assert results[0].error_msg is None
    assert all(stopped(r.error_msg) for r in results[1:])


def test_cost_model_aborts_the_search_after_ctrl_c():
    from mcc.tuning.search import SearchAborted, stoppable_cost_model

    stop = Stop()
    model = stoppable_cost_model(stop, num_tuning_cores=1)
    stop.interrupted = True
    with pytest.raises(SearchAborted):
        model._inst.predict(None, [])


def test_a_mutated_candidate_keys_the_same_as_its_logged_record():
    """A C++ mutator leaves decisions as IntImms; the record read back from the log holds
    plain ints. Both must give one key, or a resumed run measures logged candidates again
    (it did: about one in three reruns of test_rerun_after_ctrl_c_continues)."""
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir import meta_schedule as ms

    from mcc.tuning.search import trace_key

    a = te.placeholder((64, 64), name="a")
    b = te.compute((64, 64), lambda i, j: a[i, j] + 1.0, name="b")
    mod = tvm.IRModule({"main": te.create_prim_func([a, b])})
    sch = s_tir.Schedule(mod, seed=1)
    loop, _ = sch.get_loops(sch.get_sblock("b"))
    sch.split(loop, sch.sample_perfect_tile(loop, n=2))
    tile = next(i for i in sch.trace.insts if i.kind.name == "SamplePerfectTile")
    imm = [tvm.tirx.IntImm("int64", 8), tvm.tirx.IntImm("int64", 8)]
    mutated = sch.trace.with_decision(tile, imm, remove_postproc=False)

    database = ms.database.MemoryDatabase()
    workload = database.commit_workload(mod)
    record = ms.database.TuningRecord(mutated, workload, [1e-6], tvm.target.Target("llvm"))
    text = json.dumps(record.as_json(), default=lambda v: getattr(v, "value", str(v)))
    logged = ms.database.TuningRecord.from_json(json.loads(text), workload)
    assert trace_key(mutated) == trace_key(logged.trace)
    other = sch.trace.with_decision(tile, [4, 16], remove_postproc=False)
    assert trace_key(other) != trace_key(logged.trace)


def test_cpu_candidates_are_timed_with_cold_weights():
    from mcc.tuning import SearchOptions, evaluator_config

    cpu = evaluator_config(SearchOptions(), "llvm")
    assert cpu.enable_cpu_cache_flush and cpu.number == 1 and cpu.min_repeat_ms == 0
    assert cpu.repeat == SearchOptions().flush_repeat
    gpu = evaluator_config(SearchOptions(), "cuda")  # a host-side flush means nothing there
    assert not gpu.enable_cpu_cache_flush and gpu.min_repeat_ms == SearchOptions().min_repeat_ms
    hot = evaluator_config(SearchOptions(cache_flush=False), "llvm")
    assert not hot.enable_cpu_cache_flush
