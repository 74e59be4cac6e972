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


def _click_option(opt):
    """The click decorator of one CompileConfig field's flag (mcc.driver.options.Option)."""
    decls = [opt.cli_flag, opt.name]
    help_text = opt.cli_help or opt.help
    if isinstance(opt.default, bool):
        if "/" in opt.cli_flag:  # --winograd/--no-winograd
            return click.option(*decls, default=opt.default, show_default=opt.show_default,
                                help=help_text)
        return click.option(*decls, is_flag=True, flag_value=not opt.default,
                            default=opt.default, help=help_text)
    kind = (click.Choice(opt.choices) if opt.choices
            else click.FloatRange(min=opt.minimum) if opt.minimum is not None else opt.type)
    return click.option(*decls, type=kind, multiple=opt.multiple, metavar=opt.metavar,
                        default=() if opt.multiple else opt.default,
                        show_default=opt.show_default, help=help_text)


def config_options(*names, kernels=False):
    """The flags of these CompileConfig fields (of all, or of those that shape the kernels),
    in the fields' order: generated from mcc.driver.config, never listed here."""
    from mcc.driver.config import OPTIONS

    chosen = [o for o in OPTIONS.values()
              if o.name in names or (not names and (o.kernels or not kernels))]

    def add(command):
        for opt in reversed(chosen):  # click lists options in the opposite order of decorators
            command = _click_option(opt)(command)
        return command

    return add


@main.command()
@click.argument("model")
@click.option("-o", "--output", help="output .so (default: <model stem>.so here)")
@config_options()
def compile(model, output, **options):
    """Compile MODEL (.onnx or .pt2) into one verified .so."""
    import mcc
    from mcc.driver.config import from_cli

    out = Path(output) if output else Path.cwd() / (Path(model).stem + ".so")
    if out.suffix != ".so":
        raise MccError(f"output '{out}' must end in .so")
    from mcc.driver.input_checks import check_output_folder

    check_output_folder(out)  # before compiling, not after minutes of work
    from mcc.build.leftovers import clean_stale

    clean_stale(out.parent, say=_stderr)  # what a killed run left in $TMPDIR and beside out
    compiled = mcc.compile(model, progress=_stderr, **from_cli(options))
    compiled.export(out)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def _load_feed(path: str | None, module) -> dict:
    from mcc.runtime.tensors import random_inputs

    if path is None:
        _stderr("[mcc] no --inputs given: running on seeded random inputs (seed 0)")
        from mcc.frontends.feeds import module_rules

        return random_inputs(module.inputs, seed=0, rules=module_rules(module.metadata))
    from mcc.runtime.tensors import read_npz

    return read_npz(path)


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
    if meta.get("precision", {}).get("mode") == "auto":  # what auto tried and kept
        from mcc.driver.precision_choice import describe

        for i, line in enumerate(describe(meta["precision"])):
            click.echo(("precision: " if i == 0 else "           ")
                       + line.removeprefix("[mcc] ").removeprefix("precision "))
    elif meta.get("precision"):  # --precision bf16
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
@config_options("target", "input_shapes")
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


def _compare_flags() -> list[str]:
    """The compile options `mcc compare` takes: all but verification's, which it replaces."""
    from mcc.driver.config import OPTIONS

    return [n for n in OPTIONS if n not in ("verify", "verify_inputs", "rtol", "atol")]


@main.command()
@click.argument("model", metavar="MODEL.onnx|MODEL.so")
@click.option("--inputs", "inputs_path", metavar="IN.npz",
              help="inputs keyed by input name (default: seeded random inputs, --seed)")
@click.option("--reference", type=click.Choice(["ort", "fp32"]), default="ort",
              show_default=True, help="ort: ONNX Runtime fp32; fp32: mcc's own build of the "
              "model without the --quantize / --precision options")
@click.option("--reference-model", metavar="MODEL.onnx",
              help="for a .so: the fp32 model to compare its outputs with (default: the model "
              "it was built from)")
@click.option("--layers", multiple=True, metavar="OP|NODE|TENSOR",
              help="compare only the outputs of these op types (Conv), nodes or tensors "
              "(repeatable or comma-separated; default: every activation)")
@click.option("--threshold", type=click.FloatRange(min=0.0), default=None,
              help="relative error above which a float tensor counts as lossy (default 1e-3)")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="layers listed, the most error added first")
@click.option("--json", "as_json", is_flag=True, help="print every layer as JSON")
@config_options(*_compare_flags())
def compare(model, inputs_path, reference, reference_model, layers, threshold, top, as_json,
            **options):
    """Find the layer that loses accuracy: compare MODEL.onnx built with the given compile
    options (int8, bf16, a layout, ...) with ONNX Runtime fp32 (or mcc's fp32 build), tensor
    by tensor in graph order, and name the culprit: the first layer whose relative error
    jumps past --threshold. A compiled MODEL.so keeps no intermediate tensors, so for it
    only the outputs are compared, against --reference-model."""
    import mcc
    from mcc.driver.config import from_cli

    ctx = click.get_current_context()
    given = {name: value for name, value in options.items()
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    selection = tuple(part for item in layers for part in item.split(",") if part)
    report = mcc.compare(model, inputs=inputs_path, reference=reference,
                         reference_model=reference_model, layers=selection, threshold=threshold,
                         progress=_stderr, **from_cli(given))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.lines(top=top):
            click.echo(line)


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
@config_options("target")
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
@config_options(kernels=True)  # the flags that shape the kernels, as `mcc compile` takes them
def tune(paths, target, trials, time_budget, tuning_log, rpc_tracker, rpc_key, merge, output,
         as_json, **compile_options):
    """Auto-tune MODEL with MetaSchedule (resumable; records go to --tuning-log), or merge
    tuning logs from several machines with --merge LOG_A LOG_B -o LOG. Give the compile
    options that shape the kernels (--layout, --prune, --quantize, ...) as you will give
    them to `mcc compile`: it applies the records of kernels it builds."""
    import mcc

    if merge:
        if len(paths) < 2 or not output:
            raise MccError("--merge needs at least two logs and -o LOG: "
                           "mcc tune --merge LOG_A LOG_B -o LOG")
        from mcc.driver.config import OPTIONS

        ctx = click.get_current_context()
        given = [opt.cli_flag.split("/")[0] for opt in OPTIONS.values()
                 if opt.name in compile_options and ctx.get_parameter_source(opt.name)
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
        from mcc.driver.config import from_cli

        report = mcc.tune(paths[0], target=target, trials=trials, time_budget=time_budget,
                          tuning_log=tuning_log, rpc_tracker=rpc_tracker, rpc_key=rpc_key,
                          progress=_stderr, **from_cli(compile_options))
    _print_report(report, as_json)


@main.command()
def targets():
    """List the target presets and what each means."""
    import mcc

    for name, description in mcc.list_targets():
        click.echo(f"{name:<12} {description}")
    click.echo("A raw TVM target works too: --target '{\"kind\": \"llvm\", \"mcpu\": \"znver4\"}'")


if __name__ == "__main__":
    main()
