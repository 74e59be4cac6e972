"""The ``mcc`` command: a thin click layer over the Python API's verbs.

Every user error surfaces as one ``error: ...`` line on stderr and exit code 1;
anything unexpected as one ``internal error: ...`` line and exit code 2
(MCC_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click

from mcc.errors import MccError


def _stderr(message: str) -> None:
    click.echo(message, err=True)


def _print_report(report, as_json: bool) -> None:
    """A verb's report (bench, tune, merge) as JSON or as its text lines."""
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


class MccGroup(click.Group):
    """Turns exceptions into one line and an exit code, at the edge of the program."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MccError as err:
            _stderr(f"error: {err}")
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # stdout piped into e.g. `head`, which stopped reading
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except KeyboardInterrupt as err:  # e.g. mcc tune's TuneInterrupted says what it kept
            _stderr(f"interrupted: {err}" if str(err) else "interrupted")
            sys.exit(130)
        except Exception as err:
            if os.environ.get("MCC_DEBUG"):
                raise
            text = " ".join(str(err).split())[:300]
            _stderr(f"internal error: {type(err).__name__}: {text} (MCC_DEBUG=1 for a traceback)")
            sys.exit(2)


@click.group(cls=MccGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mcc")
def main():
    """mcc: compile ONNX and PyTorch models into verified, deployable TVM modules."""
    warnings.filterwarnings("ignore")


def _target_help() -> str:
    return "target preset (see `mcc targets`) or a TVM target as JSON; default: this CPU"


@main.command()
@click.argument("model")
@click.option("-o", "--output", help="output .so (default: <model stem>.so here)")
@click.option("--target", default=None, help=_target_help())
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="fix an input's shape (repeatable)")
@click.option("--bind", "bind", multiple=True, metavar="NAME=V1,V2,...",
              help="freeze an ONNX graph input to these values (a 1-d constant of its dtype: "
                   "reduce axes, TopK k, Resize sizes, ...); it is then no module input "
                   "(repeatable)")
@click.option("--tuning-log", "tuning_logs", multiple=True, metavar="DIR",
              help="extra MetaSchedule tuning-log directory (repeatable)")
@click.option("--no-verify", is_flag=True, help="skip the comparison with the reference runtime")
@click.option("--verify-inputs", metavar="FILE.npz",
              help="verify on these inputs (keyed by input name) instead of synthetic ones "
                   "(default: the first --calibration sample, if given)")
@click.option("--rtol", type=float, default=None, help="relative tolerance (default 1e-4)")
@click.option("--atol", type=float, default=None, help="absolute tolerance (default 1e-4)")
@click.option("--calibration", metavar="DATA",
              help="sample inputs: .npz keyed by input name (first axis = samples) or a directory"
                   " ('random': noise, for int8 speed tests only)")
@click.option("--quantize", type=click.Choice(["int8", "fp16"]), default=None,
              help="int8: calibrated post-training quantization; fp16: mixed precision (GPUs)")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]),
              default="minmax", show_default=True, help="how int8 activation ranges are chosen")
@click.option("--per-tensor", is_flag=True,
              help="one int8 weight scale per tensor (default: per output channel)")
@click.option("--exclude", "exclude", multiple=True, metavar="OP_OR_NODE",
              help="keep an op kind (conv2d, matmul) or node (conv2d_3) in fp32 (repeatable)")
@click.option("--accuracy-budget", type=click.FloatRange(min=0.0), default=None, metavar="X",
              help="keep the most sensitive ops in fp32 until the loss vs fp32 (worst of "
                   "1 - cosine, 1 - top-1 agreement) is <= X")
@click.option("--holdout", type=float, default=None, metavar="FRACTION",
              help="share of the --calibration samples kept out of calibration for the int8 "
                   "accuracy report (default: 0.2 with 10+ samples, else 0)")
@click.option("--prune", metavar="zero|RATIO",
              help="remove channels: 'zero' = all-zero filters (lossless); RATIO in (0,1) = that "
                   "share of each layer's lowest-norm filters (no fine-tuning)")
@click.option("--prune-criterion", type=click.Choice(["l1", "l2"]), default="l1",
              show_default=True, help="filter norm that ranks filters for --prune RATIO")
@click.option("--cross-compiler", default=None, metavar="CXX",
              help="C++ compiler that links the .so for another architecture "
                   "(default for ARM targets: aarch64-linux-gnu-g++)")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC", "NCHWc", "auto"]), default="auto",
              show_default=True, help="convolution data layout (auto: fastest for the target)")
@click.option("--winograd/--no-winograd", default=True, show_default=True,
              help="3x3 stride-1 convolutions as Winograd F(4x4, 3x3) on CPUs (NHWC layout)")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16: conv2d / matmul as bf16 kernels with fp32 "
              "accumulation (AVX-512 BF16 CPUs); verified by cosine >= 0.999 per output")
def compile(model, output, target, input_shapes, tuning_logs, no_verify, rtol, atol, calibration,
            prune, prune_criterion, cross_compiler, layout, quantize, calibration_method,
            per_tensor, exclude, accuracy_budget, holdout, winograd, verify_inputs, bind,
            precision):
    """Compile MODEL (.onnx or .pt2) into one verified .so."""
    import mcc
    from mcc.driver.bind import parse_bind
    from mcc.runtime.tensors import parse_input_shapes

    out = Path(output) if output else Path.cwd() / (Path(model).stem + ".so")
    if out.suffix != ".so":
        raise MccError(f"output '{out}' must end in .so")
    from mcc.driver.input_checks import check_output_folder

    check_output_folder(out)  # before compiling, not after minutes of work
    from mcc.build.leftovers import clean_stale

    clean_stale(out.parent, say=_stderr)  # what a killed run left in $TMPDIR and beside out
    compiled = mcc.compile(model, target=target, input_shapes=parse_input_shapes(input_shapes),
                           tuning_logs=tuning_logs, verify=not no_verify, rtol=rtol, atol=atol,
                           calibration=calibration, prune=prune,
                           prune_criterion=prune_criterion, layout=layout, quantize=quantize,
                           calibration_method=calibration_method, per_tensor=per_tensor,
                           exclude=exclude, accuracy_budget=accuracy_budget, progress=_stderr,
                           cross_compiler=cross_compiler, holdout=holdout, winograd=winograd,
                           verify_inputs=verify_inputs, bind=parse_bind(bind),
                           precision=precision)
    compiled.export(out)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def _load_feed(path: str | None, module) -> dict:
    import numpy as np

    from mcc.runtime.tensors import random_inputs

    if path is None:
        _stderr("[mcc] no --inputs given: running on seeded random inputs (seed 0)")
        from mcc.frontends.feeds import module_rules

        return random_inputs(module.inputs, seed=0, rules=module_rules(module.metadata))
    if not Path(path).exists():
        raise MccError(f"inputs file '{path}' not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as err:  # ValueError, EOFError, zipfile.BadZipFile, zlib.error ...
        from mcc.errors import first_line

        raise MccError(f"'{path}' is not a readable .npz file: {first_line(err)}") from None


def _save_npz(path: str, arrays: dict) -> None:
    import numpy as np

    from mcc.build.export import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


@main.command()
@click.argument("module_path", metavar="MODEL.so")
@click.option("--inputs", "inputs_path", metavar="IN.npz", help="inputs keyed by input name")
@click.option("--output", "output_path", metavar="OUT.npz", help="write outputs here")
def run(module_path, inputs_path, output_path):
    """Run a compiled module once and print its outputs."""
    import numpy as np

    import mcc

    if output_path:
        from mcc.driver.input_checks import check_output_folder

        check_output_folder(output_path)
    module = mcc.load(module_path)
    outputs = module.run(_load_feed(inputs_path, module))
    for name, value in outputs.items():
        flat = np.asarray(value).reshape(-1)
        head = np.array2string(flat[:6], precision=5, separator=", ")
        stats = (f"min {flat.min():.5g} max {flat.max():.5g} mean {flat.mean():.5g}"
                 if flat.size and np.issubdtype(flat.dtype, np.number) else "")
        click.echo(f"{name}: {value.dtype}{list(value.shape)} {stats} first {head}")
    if output_path:
        _save_npz(output_path, outputs)
        click.echo(f"wrote {output_path}")


@main.command()
@click.argument("module_path", metavar="MODEL.so")
@click.option("--inputs", "inputs_path", metavar="IN.npz", help="inputs keyed by input name")
@click.option("--rounds", type=click.IntRange(min=1), default=20, show_default=True,
              help="instrumented runs averaged")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="kernels listed (the rest summed)")
@click.option("--json", "as_json", is_flag=True, help="print the whole table as JSON")
def profile(module_path, inputs_path, rounds, top, as_json):
    """Time each kernel of a compiled module: where the time goes, slowest first."""
    import mcc

    module = mcc.load(module_path)
    result = mcc.profile(module, _load_feed(inputs_path, module), rounds=rounds)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    for line in result.lines(top=top):
        click.echo(line)


@main.command()
@click.argument("module_path", metavar="MODEL.so")
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def info(module_path, as_json):
    """Show a compiled module's metadata (read without loading it)."""
    from mcc.runtime.integrity import check
    from mcc.runtime.metadata import read_metadata

    intact, detail = check(module_path)
    try:
        meta = read_metadata(module_path)
    except MccError as err:
        if intact is False:
            raise MccError(f"'{module_path}': integrity check FAILED: {detail}") from None
        raise err from None
    if as_json:
        meta = dict(meta, integrity={"ok": intact, "detail": detail})
        click.echo(json.dumps(meta, indent=2, sort_keys=True))
        return
    target = meta["target"]
    click.echo(f"module:   {module_path}")
    click.echo("integrity: " + {True: f"ok (sha256 {detail[:16]}...)", None: f"none ({detail})",
                                False: f"FAILED ({detail})"}[intact])
    click.echo(f"target:   {target['name']} {json.dumps(target['tvm'], sort_keys=True)}")
    for kind in ("inputs", "outputs"):
        for t in meta[kind]:
            dims = ",".join(str(d) for d in t["shape"])
            click.echo(f"{kind[:-1]:<8}  {t['name']}: {t['dtype']}[{dims}]")
    sched = meta.get("schedule", {})
    click.echo(f"kernels:  {sched.get('tasks')} ({sched.get('from_records')} from tuning records, "
               f"{sched.get('from_default_rules')} from default rules, "
               f"{sched.get('naive')} untuned)")
    from mcc.targets.kinds import kind_of

    if kind_of(target["tvm"]).compiles_device_code:
        from mcc.build.cuda import device_code_info

        for fatbin in device_code_info(module_path):
            click.echo(f"device:   CUDA fatbin {fatbin['bytes'] / 1e3:.1f} kB, SASS "
                       f"{','.join(fatbin['sass']) or '-'}, PTX {','.join(fatbin['ptx']) or '-'}")
    click.echo(f"passes:   {', '.join(meta.get('passes', []))}")
    if meta.get("prune"):
        prune = meta["prune"]
        how = "zero filters" if prune["mode"] == "zero" else \
            f"{prune['criterion']} ratio {prune['ratio']:g}, no fine-tuning"
        click.echo(f"pruning:  {how}: {prune['channels_removed']} channels removed, params "
                   f"{prune['before']['params']:,} -> {prune['after']['params']:,}, FLOPs "
                   f"{prune['before']['flops']:,} -> {prune['after']['flops']:,}")
        from mcc.driver.pruning import layer_lines

        for line in layer_lines(prune):
            click.echo(f"          {line}")
    quant = meta.get("quantization")
    if quant:
        ops = (f", {len(quant.get('int8_ops', []))} ops int8, "
               f"{len(quant.get('fp32_ops', {}))} fp32" if "int8_ops" in quant else "")
        accuracy = (quant.get("accuracy") or {}).get("outputs", {})
        cosines = ", ".join(f"{k} cosine {v['cosine']:.5f}" for k, v in accuracy.items())
        data = (quant.get("accuracy") or {}).get("data")
        on = f" on {data} samples" if data else ""
        versus = f" (vs fp32{on}: {cosines})" if cosines else ""
        click.echo(f"quantize: {quant['mode']}{ops}{versus}")
    if meta.get("precision"):  # --precision bf16
        click.echo(f"precision: {meta['precision']['mode']}, "
                   f"{meta['precision'].get('bf16_kernels', 0)} bf16 kernels, "
                   f"{len(meta['precision'].get('fp32_ops', {}))} conv/matmul ops fp32")
    source = meta.get("source", {})
    click.echo(f"source:   {source.get('format')} {source.get('path')}")
    click.echo(f"versions: mcc {meta['mcc_version']}, TVM {meta['tvm_version']}")
    if intact is False:
        raise MccError(f"'{module_path}': integrity check FAILED: {detail}")


@main.command()
@click.argument("model")
@click.option("--target", default=None, help=_target_help())
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D0,D1,...",
              help="fix an input's shape (repeatable)")
@click.option("--repeat", type=click.IntRange(min=1), default=50, show_default=True,
              help="timed runs per runtime")
@click.option("--reference", metavar="MODEL", help="reference model for a .so (.onnx / .pt2)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def bench(model, target, input_shapes, repeat, reference, as_json):
    """Time batch-1 latency of MODEL (or a .so) against ONNX Runtime / PyTorch."""
    import mcc
    from mcc.runtime.tensors import parse_input_shapes

    report = mcc.bench(model, target=target, input_shapes=parse_input_shapes(input_shapes),
                       repeat=repeat, reference=reference, progress=_stderr)
    _print_report(report, as_json)


@main.command()
@click.argument("module_path", metavar="MODEL.so")
@click.option("-o", "--output", "out_dir", required=True, metavar="DIR",
              help="bundle directory to create")
@click.option("--cross-compiler", default=None, metavar="CXX",
              help="C++ compiler for the runner (default: the module's target's)")
@click.option("--force", is_flag=True, help="replace DIR if it exists")
def package(module_path, out_dir, cross_compiler, force):
    """Make a deploy bundle: the .so, the TVM runtime and C++ runner for its CPU, a README."""
    import mcc

    out = mcc.bundle(module_path, out_dir, cross_compiler=cross_compiler, force=force,
                     progress=_stderr)
    click.echo(f"wrote {out}/ (see {out}/README.md)")


@main.command()
@click.argument("paths", nargs=-1, metavar="MODEL | --merge LOG_A LOG_B ...")
@click.option("--target", default=None, help=_target_help())
@click.option("--trials", type=int, default=None,
              help="new measurements to make (default: 64 per task unless --time-budget)")
@click.option("--time-budget", type=float, default=None, metavar="MINUTES",
              help="stop after this many minutes (import, baselines and search included)")
@click.option("--tuning-log", default="tuning_logs", show_default=True, metavar="DIR",
              help="log directory to resume from and append to")
@click.option("--rpc-tracker", metavar="HOST:PORT", help="measure on devices of a TVM RPC tracker")
@click.option("--rpc-key", metavar="KEY", help="device key registered with the RPC tracker")
@click.option("--merge", is_flag=True, help="merge the given tuning logs instead of tuning")
@click.option("-o", "--output", metavar="LOG", help="output directory of --merge")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def tune(paths, target, trials, time_budget, tuning_log, rpc_tracker, rpc_key, merge, output,
         as_json, input_shapes, **compile_options):
    """Auto-tune MODEL with MetaSchedule (resumable; records go to --tuning-log), or merge
    tuning logs from several machines with --merge LOG_A LOG_B -o LOG. Give the compile
    options that shape the kernels (--layout, --prune, --quantize, ...) as you will give
    them to `mcc compile`: it applies the records of kernels it builds."""
    import mcc
    from mcc.runtime.tensors import parse_input_shapes

    if merge:
        if len(paths) < 2 or not output:
            raise MccError("--merge needs at least two logs and -o LOG: "
                           "mcc tune --merge LOG_A LOG_B -o LOG")
        given = [f"--{name.replace('_', '-')}" for name in WORKLOAD_OPTIONS
                 if click.get_current_context().get_parameter_source(name)
                 == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise MccError(f"{', '.join(given)}: compile options apply to tuning a MODEL; --merge "
                           "takes logs only")
        report = mcc.merge_tuning_logs(paths, output)
    else:
        if len(paths) != 1:
            raise MccError("mcc tune takes one MODEL (or --merge LOG_A LOG_B -o LOG)")
        if output:
            raise MccError("-o is for --merge; tuning writes to --tuning-log DIR")
        from mcc.driver.bind import parse_bind

        compile_options["bind"] = parse_bind(compile_options.get("bind", ()))
        report = mcc.tune(paths[0], target=target, trials=trials, time_budget=time_budget,
                          tuning_log=tuning_log, input_shapes=parse_input_shapes(input_shapes),
                          rpc_tracker=rpc_tracker, rpc_key=rpc_key, progress=_stderr,
                          **compile_options)
    _print_report(report, as_json)


# The options that change which kernels a compile builds are defined once, on
# `mcc compile`, and shared with `mcc tune`: tuning then sees the kernels compile builds.
WORKLOAD_OPTIONS = ("input_shapes", "layout", "winograd", "prune", "prune_criterion", "quantize",
                    "calibration", "calibration_method", "per_tensor", "exclude",
                    "accuracy_budget", "holdout", "bind")
tune.params.extend(p for p in compile.params if p.name in WORKLOAD_OPTIONS)


@main.command()
def targets():
    """List the target presets and what each means."""
    import mcc

    for name, description in mcc.list_targets():
        click.echo(f"{name:<12} {description}")
    click.echo("A raw TVM target works too: --target '{\"kind\": \"llvm\", \"mcpu\": \"znver4\"}'")


if __name__ == "__main__":
    main()
