"""Lower a Relax module to a VM executable: graph passes, schedules, then TVM's build.

:func:`lower_and_build` is the one road from an imported (or quantized) Relax module to
an executable: ``mcc compile`` (per candidate layout), the quantizer's calibration and
accuracy-budget builds and the ONNX conformance backend all take it. ``stage`` and
``say`` let the driver time and report each step; other callers leave them out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types

import tvm

from mcc.errors import MccError, first_line


def build(mod: tvm.IRModule, target: tvm.target.Target):
    """``tvm.compile`` with TVM's lowering pipeline (the graph work is already done), and
    float max / min keeping NaN in the scheduled kernels (:mod:`mcc.build.nan`)."""
    from mcc.build import nan
    from mcc.build.cuda import nvcc_for

    try:
        with nvcc_for(target):  # CUDA kernels compiled by nvcc for the target's arch
            return tvm.compile(mod, target=target, relax_pipeline="default",
                               tir_pipeline=nan.register())
    except Exception as err:
        raise MccError(f"build failed for target {target.kind.name}: {first_line(err)}") from None


@dataclasses.dataclass
class Lowered:
    executable: object
    passes: list  # the graph passes applied, named as the metadata records them
    coverage: object  # mcc.schedule.ScheduleReport: where each kernel's schedule came from
    precision: dict | None = None  # --precision bf16: kernels, sites (mcc.passes.bf16)


@contextlib.contextmanager
def _unreported(name: str):
    yield types.SimpleNamespace(detail="")


def run_passes(mod, target, *, layout: str = "auto", auto_choice=None, winograd: bool = True,
               bf16: bool = False, say=None, stage=_unreported):
    """The graph pipeline to fused TIR kernels: (module, pass names).

    ``auto_choice``: the candidate of ``--layout auto`` being tried."""
    from mcc.build.pipeline import optimize

    with stage("passes") as st:
        mod, passes = optimize(mod, target, layout=layout, say=say, auto_choice=auto_choice,
                               winograd=winograd, bf16=bf16)
        st.detail = f"{len(passes)} passes"
    return mod, passes


def lower_and_build(mod, preset, target, *, layout: str = "auto", auto_choice=None,
                    winograd: bool = True, bf16: bool = False, tuning_logs=(), say=None,
                    stage=_unreported) -> Lowered:
    """passes -> schedule -> build for ``preset`` (a TargetPreset; ``target`` its TVM target)
    and one layout (``auto_choice``: a candidate of auto)."""
    from mcc.schedule import schedule

    mod, passes = run_passes(mod, target, layout=layout, auto_choice=auto_choice,
                             winograd=winograd, bf16=bf16, say=say, stage=stage)
    precision = None
    if bf16:
        from mcc.passes.bf16 import precision_report

        mod, precision = precision_report(mod)

    # schedule: tuning records first, default rules for the rest
    with stage("schedule") as st:
        unscheduled = mod
        mod, coverage = schedule(mod, target, preset.family, tuning_logs)
        st.detail = (f"{coverage.tasks} kernels: {coverage.from_records} from tuning records, "
                     f"{coverage.from_rules} from default rules, {coverage.naive} untuned")
        if coverage.rules_beat_records:
            st.detail += (f" ({coverage.rules_beat_records} where the default rules beat "
                          "the tuned records)")
        if coverage.refused:
            from mcc.schedule.records import describe_key

            st.detail += "; ignored tuning records for other targets: " + ", ".join(
                f"{n} for {describe_key(k)}" for k, n in sorted(coverage.refused.items()))

    # build: TVM lowering and LLVM code generation
    with stage("build") as st:
        try:
            executable = build(mod, target)
        except MccError as err:
            # an epilogue fused into a conv / matmul kernel that lowers wrongly (seen: a
            # tanh-GELU after a matmul in Magika): rebuild with epilogues as separate loops
            if say is not None:
                say(f"[mcc] {err}; rebuilding with unfused epilogues")
            mod, coverage = schedule(unscheduled, target, preset.family, tuning_logs,
                                     fuse_epilogues=False)
            executable = build(mod, target)
        st.detail = (f"target {preset.name} "
                     f"({preset.cuda_arch or preset.tvm.get('mcpu', 'generic')})")
    return Lowered(executable, passes, coverage, precision)
