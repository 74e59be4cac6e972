"""Fast MetaSchedule build workers: the reason tuning a tiny model takes seconds, not minutes.

Two costs made TVM's stock ``LocalBuilder`` time out in this sandbox (4 trials of a
tiny conv: 195 s, every candidate "LocalBuilder: Timeout, killed after 30.0 seconds"):

* ``import tvm.s_tir.tensor_intrin`` (done by ``TuneContext`` and inside every
  build call) registers the CUDA, ROCm, Hexagon, ARM and x86 tensor intrinsics:
  30-50 s of CPU per process, counted inside the build timeout.
* ``LocalBuilder`` starts a fresh process pool for every batch, so every batch
  paid that import again, plus ``import tvm``.

:func:`load_tensor_intrinsics` registers only the intrinsics of the target's
architecture (the ones its schedule rules can use), and :class:`PooledBuilder`
keeps its worker processes for the whole tuning run, warmed up once by an
initializer that is not counted against the per-candidate timeout.
"""

from __future__ import annotations

import importlib.util
import sys

# Intrinsic modules (under tvm.s_tir.tensor_intrin) a target kind / arch can use.
_INTRINSICS_FOR = {"x86_64": ("x86",), "aarch64": ("arm_cpu",), "riscv64": ("riscv_cpu",),
                   "cuda": ("cuda",), "rocm": ("rocm",)}


def load_tensor_intrinsics(arch: str) -> None:
    """Register the tensor intrinsics for ``arch`` without TVM's all-targets package import.

    The package module is created without running its ``__init__`` (which imports
    every architecture); later ``import tvm.s_tir.tensor_intrin`` statements inside
    TVM then find it in ``sys.modules`` and cost nothing.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name not in sys.modules:
        import tvm.s_tir

        spec = importlib.util.find_spec(name)
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        tvm.s_tir.tensor_intrin = package
    for sub in _INTRINSICS_FOR.get(arch, ()):
        importlib.import_module(f"{name}.{sub}")


def warm_worker(arch: str) -> None:
    """Popen-pool initializer: pay the imports once per worker, outside any timeout."""
    load_tensor_intrinsics(arch)
    import tvm.driver  # noqa: F401
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock  # noqa: F401


def build_candidate(mod, target, _params):
    """Same as MetaSchedule's ``default_build``, minus the all-targets intrinsic import."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def make_builder(arch: str, max_workers: int, timeout_sec: float, stop=None):
    """A MetaSchedule builder whose warmed worker processes live for the whole run.
    Once ``stop`` (mcc.tuning.search.Stop) fires, the rest of a batch is not built."""
    from functools import partial

    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    @derived_object
    class PooledBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec,
                                          initializer=partial(warm_worker, arch))

        def build(self, build_inputs):
            from mcc.tuning.search import STOPPED

            jobs = [(build_candidate, "s_tir.meta_schedule.builder.default_export",
                     b.mod, b.target, _serialize_params(b.params)) for b in build_inputs]
            results = []
            # one job per worker per step: between steps a stop (Ctrl-C, time budget) is
            # seen; and a worker that Ctrl-C killed is not sent another job, which would
            # start and warm up a new one first (19 s measured on a busy machine)
            step = max_workers
            for start in range(0, len(jobs), step):
                if stop is not None and stop.now():
                    results += [BuilderResult(None, STOPPED)] * (len(jobs) - start)
                    break
                results += self._build(jobs[start:start + step])
            return results

        def _build(self, jobs):
            results = []
            for res in self.pool.map_with_error_catching(lambda job: _worker_func(*job), jobs):
                if res.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(res.value, None))
                elif res.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {timeout_sec} s"))
                else:
                    results.append(BuilderResult(None, f"build failed: {res.value}"))
            return results

        def shutdown(self):
            self.pool.shutdown()

    return PooledBuilder()
