"""Give every PrimFunc a schedule: tuning records first, then default rules.

Order of preference per kernel (a "task"):
  1. a MetaSchedule record from a tuning log for this target family
     (``tuning_logs/<kind>-<arch>/`` and any ``--tuning-log`` directory);
  2. mcc's int8 kernels (``mcc.schedule.rules.int8``, VNNI where the CPU has it) for quantized
     kernels, then the default rules for the target kind (``mcc.schedule.rules``): on CPUs
     mcc's conv, matmul, pooling and elementwise rules plus dlight's GEMV / reduction rules;
     on CUDA dlight's GPU rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback);
  3. otherwise the kernel keeps TVM's naive loop nest, and is counted as such.
The counts are reported, so a user sees how much of a model is tuned.

The schedule stage may import mcc.passes (the int8 kernels it recognises),
mcc.targets, mcc.errors; it reads tuning records itself (mcc.schedule.records), so it
never imports mcc.tuning (which imports it), nor the driver, build, deploy or verify stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tvm
from tvm import tirx

PROJECT_TUNING_LOGS = Path(__file__).resolve().parents[2] / "tuning_logs"


@dataclass(frozen=True)
class ScheduleReport:
    tasks: int
    from_records: int
    from_rules: int
    naive: int
    record_dirs: tuple[str, ...]
    # records in those logs measured on other targets: refused, never applied
    refused: dict[str, int] = field(default_factory=dict, compare=False)
    # kernels whose tuned records were all slower than the default rules' measured
    # baseline (mcc.tuning.baseline): scheduled by the rules, counted in from_rules
    rules_beat_records: int = 0
    # kernel name -> {"schedule": where its schedule came from, "flops": its work or None,
    # "parallel": runs on the thread pool (mcc.schedule.small_kernels)}; `mcc profile` shows it
    kernels: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        return {"tasks": self.tasks, "from_records": self.from_records,
                "from_default_rules": self.from_rules, "naive": self.naive,
                "tuning_logs": list(self.record_dirs), "refused_records": dict(self.refused),
                "rules_beat_records": self.rules_beat_records, "kernels": self.kernels}


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


_DATABASE_CACHE: dict = {}


def _database(dirs: list[Path], target):
    """``_read_database``, once per process for logs that did not change since: reading
    and parsing the shipped records took about 0.5 s, and tests and ``--layout auto``
    compile many times."""
    from mcc.schedule.records import RECORD_FILE, WORKLOAD_FILE

    stamp = [str(target)]
    for d in dirs:
        for name in (WORKLOAD_FILE, RECORD_FILE):
            st = (d / name).stat()
            stamp.append((str(d.resolve()), name, st.st_mtime_ns, st.st_size))
    key = tuple(stamp)
    if key not in _DATABASE_CACHE:
        _DATABASE_CACHE.clear()  # one set of logs at a time
        _DATABASE_CACHE[key] = _read_database(dirs, target)
    return _DATABASE_CACHE[key]


def _read_database(dirs: list[Path], target):
    """The best record per kernel among those measured on ``target`` (mcc.tuning.log) and
    at least as fast as the default rules' baseline for it (mcc.tuning.baseline), the count
    of records refused for other targets, of kernels where the rules won, and the kernels
    tuned with their weights marked (``_tuned_marked``)."""
    from mcc.schedule.records import (
        best_per_workload,
        materialize,
        memory_database,
        prefer_rules,
        rechecked_only,
        records_for_target,
    )

    found = records_for_target(dirs, target)
    usable, beaten = prefer_rules(rechecked_only(found.records))
    return (memory_database(materialize(best_per_workload(usable))), found.refused, beaten,
            _tuned_marked(found.records))


def _tuned_marked(raws) -> set[int]:
    """Kernels (mcc.schedule.records.kernel_identity) that some record tuned with their weights
    marked layout-free: an older unmarked record never stands in for those, even where the
    default rules beat the newer records."""
    import base64

    from tvm.s_tir import meta_schedule as ms

    from mcc.schedule.records import kernel_identity

    out, seen = set(), set()
    for raw in raws:
        if raw.workload_id in seen:
            continue
        seen.add(raw.workload_id)
        if b"layout_free_buffers" not in base64.b64decode(raw.workload[1]):
            continue  # the mark is an attribute name in the serialised module
        for _, func in ms.database.Workload.from_json(raw.workload).mod.functions_items():
            out.add(kernel_identity(func))
    return out


def _flops(mod) -> dict[str, float]:
    """Floating-point (and integer multiply-add) work per kernel, from the unscheduled TIR."""
    from tvm.s_tir.analysis import estimate_tir_flops

    out = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            try:
                out[gv.name_hint] = float(estimate_tir_flops(tvm.IRModule({gv: func})))
            except Exception:  # noqa: BLE001 - opaque / symbolic kernels have no estimate
                pass
    return out


def _note_new(sources: dict[str, str], mod, source: str) -> None:
    """Record ``source`` for the kernels scheduled since the last note."""
    for name in _scheduled_funcs(mod):
        sources.setdefault(name, source)


def _apply_rules(mod, target, rules: list, sources: dict[str, str]):
    """dlight's ApplyDefaultSchedule (first rule that matches wins, per kernel), noting in
    ``sources`` which rule scheduled each kernel."""
    updated = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or gv.name_hint in sources:
            continue
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            continue
        func_target = func.attrs.get("target", target) if func.attrs is not None else target
        for rule in rules:
            sch = _try_rule(rule, func, func_target)
            if sch is None:
                continue
            updated[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
            sources[gv.name_hint] = f"rule {type(rule).__name__}"
            break
    for gv, func in updated.items():
        mod[gv] = func
    return mod


def _kernel_table(mod, sources: dict[str, str], flops: dict[str, float]) -> dict[str, dict]:
    from mcc.schedule.small_kernels import has_parallel_loop

    table = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            name = gv.name_hint
            # SplitLayoutRewritePreproc renames a kernel whose weights it prepacks
            scheduled_as = name if name in sources else name.removesuffix("_prepacked")
            work = flops.get(scheduled_as)
            table[name] = {"schedule": sources.get(scheduled_as, "naive"),
                           "flops": int(work) if work else None,
                           "parallel": has_parallel_loop(func)}
    return table


# A schedule may not do more than this many times the kernel's own loop iterations.
MAX_RECOMPUTE = 4
# Nor vectorise a loop wider than two AVX-512 registers: dlight's CPU GEMV rule gave a 1x1
# conv on one pixel a 64-lane vector under an unroll pragma, and LLVM took 143 s on it.
MAX_VECTOR_BYTES = 128


def _try_rule(rule, func, target):
    """``rule``'s schedule of ``func`` (one), or None when the rule does not apply, crashes
    on the kernel (dlight's GEMV rule asserts on some reductions: ReduceLogSumExp),
    recomputes it (dlight's CPU Reduction rule put a [1, 1000] softmax whole inside a
    parallel loop over its 1000 outputs: 2.4 ms where 3 us do), vectorises far wider
    than any SIMD register (``MAX_VECTOR_BYTES``) or copies its code over
    (``MAX_CODE_GROWTH``). The next rule then schedules it."""
    from mcc.schedule.small_kernels import kernel_work

    try:
        space = rule.apply(func, target, False)
    except Exception:  # noqa: BLE001 - any crash means "not for this kernel"
        return None
    if space is None:
        return None
    sch = space[0] if isinstance(space, list) else space
    body = sch.mod["main"].body
    if kernel_work(body) > MAX_RECOMPUTE * max(1, kernel_work(func.body)):
        return None
    if _widest_vector(body) > MAX_VECTOR_BYTES:
        return None
    if _code_size(body) > max(MAX_CODE_GROWTH * _code_size(func.body), MIN_CODE_CHECKED):
        return None
    return sch


# Inlining a producer into each of its readers copies its expression: an LSTM's last cell
# (five fast sigmoid / tanh polynomials) fused with the concatenation of every step's state
# became 3x its code once inlined, and LLVM took minutes on that one kernel.
MAX_CODE_GROWTH = 2
MIN_CODE_CHECKED = 2000  # adds and multiplies: smaller kernels compile fast anyway


def _code_size(body) -> int:
    """Adds and multiplies in ``body``: how much code LLVM gets, roughly."""
    import tvm_ffi

    count = 0

    def note(_node):
        nonlocal count
        count += 1

    tvm_ffi.structural_walk(body, ((tirx.Add, tirx.Mul), note), order="post")
    return count


def _widest_vector(body) -> int:
    """Bytes of the widest vectorised loop (extent x 4: its float32 lanes) in ``body``."""
    from mcc.schedule.small_kernels import loops

    return max([4 * int(loop.extent.value) for loop in loops(body)
                if loop.kind == tirx.ForKind.VECTORIZED
                and isinstance(loop.extent, tirx.IntImm)], default=0)


def _split_layout_rewrite(mod: tvm.IRModule) -> tvm.IRModule:
    """``SplitLayoutRewritePreproc``, leaving out kernels it cannot analyse (TOPI's opaque
    scatter_elements: "There should be a compute block..."); they have nothing to split."""
    from tvm import relax, tirx

    split = relax.transform.SplitLayoutRewritePreproc()
    try:
        return split(mod)
    except Exception:  # noqa: BLE001 - TVM raises InternalError and friends
        pass
    opaque = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            try:
                split(tvm.IRModule({gv: func}))
            except Exception:  # noqa: BLE001 - TVM raises InternalError and friends
                opaque[gv] = func
    rest = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv not in opaque},
                        attrs=mod.attrs)
    rest = split(rest)
    for gv, func in opaque.items():
        rest[gv] = func
    return rest


def _apply_records(mod: tvm.IRModule, tuned_marked: set[int]) -> tvm.IRModule:
    """Apply the current database's records: first to the kernels as tuned now (constant
    weights marked layout-free, so a record may repack them at compile time), then to
    those still unscheduled without the mark (records tuned before tasks carried it),
    unless ``tuned_marked`` says a newer record of the kernel exists."""
    from tvm import relax

    from mcc.schedule.records import kernel_identity

    apply = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)
    mod = apply(mod)
    scheduled = _scheduled_funcs(mod)
    marked = {gv: func for gv, func in mod.functions_items()
              if isinstance(func, tirx.PrimFunc) and gv.name_hint not in scheduled
              and func.attrs is not None and "layout_free_buffers" in func.attrs
              and kernel_identity(func) not in tuned_marked}
    if not marked:
        return mod
    legacy = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in marked.items():
        legacy[gv] = func.without_attr("layout_free_buffers")
    legacy = apply(legacy)
    newly = _scheduled_funcs(legacy)
    for gv in marked:
        if gv.name_hint in newly:
            mod[gv] = legacy[gv]
    return mod


def schedule(mod: tvm.IRModule, target: tvm.target.Target, family: str,
             extra_dirs=(), fuse_epilogues: bool = True) -> tuple[tvm.IRModule, ScheduleReport]:
    from tvm import relax

    from mcc.schedule.rules import rules_for
    from mcc.schedule.rules.bf16 import schedule_bf16
    from mcc.schedule.rules.int8 import schedule_int8
    from mcc.schedule.small_kernels import serialize_small_kernels

    dirs = record_dirs_for(family, extra_dirs)
    refused, beaten = {}, 0
    with target:
        # Constant weights may be repacked by tuned records and by the rules: mark them
        # (kernels are renamed), schedule, then fold the repacking (split off below).
        mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
        tasks = _prim_funcs(mod)
        flops = _flops(mod)
        sources: dict[str, str] = {}
        if dirs:
            database, refused, beaten, marked = _database(dirs, target)
            with database:
                mod = _apply_records(mod, marked)
        from_records = _scheduled_funcs(mod) & tasks
        _note_new(sources, mod, "record")
        # mcc's int8 kernels (VNNI where available); unfused epilogues in the fallback too
        mod = schedule_int8(mod, target, fuse_epilogues)
        _note_new(sources, mod, "int8 kernel")
        mod = schedule_bf16(mod, target)  # mcc's bf16 kernels (vdpbf16ps, bfdot)
        _note_new(sources, mod, "bf16 kernel")
        mod = _apply_rules(mod, target, rules_for(target, fuse_epilogues), sources)
        scheduled = min(len(tasks), len(_scheduled_funcs(mod)))
        mod = _split_layout_rewrite(mod)
        mod = relax.transform.FoldConstant()(mod)
        mod = relax.transform.DeadCodeElimination()(mod)
    mod, _ = serialize_small_kernels(mod)  # after the records matched: workloads unchanged
    report = ScheduleReport(len(tasks), len(from_records), scheduled - len(from_records),
                            len(tasks) - scheduled, tuple(str(d) for d in dirs), refused,
                            beaten, kernels=_kernel_table(mod, sources, flops))
    return mod, report
