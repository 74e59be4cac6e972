"""The one list of compile options: CompileConfig's fields.

Each field says how users give it (mcc.driver.options.option: help, CLI flag, parse and
check functions). mcc.compile's and mcc.tune's keywords, the flags of ``mcc compile`` and
``mcc tune`` and their help are all read from here: adding a field adds the option.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from mcc.driver.bind import check_bind, parse_bind
from mcc.driver.options import describe, option, options
from mcc.driver.pruning import CRITERIA, check_criterion, parse_prune
from mcc.errors import MccError
from mcc.runtime.tensors import parse_input_shapes
from mcc.targets import TargetPreset, resolve_target

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4
LAYOUTS = ("NCHW", "NHWC", "NCHWc", "auto")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
AUTO_BUDGET = 0.01  # --precision auto's default --accuracy-budget (docs/quantization.md)


def _shapes(shapes: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in shapes.items()}


def _tuning_logs(dirs) -> tuple[str, ...]:
    from mcc.driver.input_checks import check_tuning_logs

    check_tuning_logs(dirs)  # a missing or empty log is an error, never silently ignored
    return tuple(str(d) for d in dirs)


def _path(path) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class CompileConfig:
    target: TargetPreset = option(
        "target preset (see `mcc targets`) or a TVM target as JSON; default: this CPU",
        required=True, convert=resolve_target)
    input_shapes: dict[str, tuple[int, ...]] = option(
        "fix an input's shape (repeatable)", factory=dict, hash=False, flag="--input-shape",
        metavar="NAME=D0,D1,...", multiple=True, parse=parse_input_shapes, convert=_shapes,
        kernels=True)
    bind: dict = option(
        "freeze an ONNX graph input to these values (a 1-d constant of its dtype: reduce axes, "
        "TopK k, Resize sizes, ...); it is then no module input (repeatable)",
        factory=dict, hash=False, compare=False, metavar="NAME=V1,V2,...", multiple=True,
        parse=parse_bind, convert=check_bind, kernels=True)
    tuning_logs: tuple[str, ...] = option(
        "extra MetaSchedule tuning-log directory (repeatable)", (), flag="--tuning-log",
        metavar="DIR", multiple=True, convert=_tuning_logs)
    verify: bool = option(
        "compare the exported module with the reference runtime", True, flag="--no-verify",
        cli_help="skip the comparison with the reference runtime")
    verify_inputs: str | None = option(
        "verify on these inputs (keyed by input name) instead of synthetic ones (default: "
        "the first --calibration sample, if given)", metavar="FILE.npz", convert=_path)
    rtol: float = option("relative tolerance (default 1e-4)", DEFAULT_RTOL, type=float)
    atol: float = option("absolute tolerance (default 1e-4)", DEFAULT_ATOL, type=float)
    seed: int = option("seed of the synthetic verification inputs", 0, type=int,
                       show_default=True)
    calibration: str | None = option(
        "sample inputs: .npz keyed by input name (first axis = samples) or a directory "
        "('random': noise, for int8 speed tests only)", metavar="DATA", convert=_path,
        kernels=True)
    quantize: str | None = option(
        "int8: calibrated post-training quantization (= --precision int8); fp16: mixed "
        "precision (= --precision fp16)",
        choices=("int8", "fp16"), kernels=True)
    calibration_method: str = option(
        "how int8 activation ranges are chosen", "minmax",
        choices=("minmax", "percentile", "entropy"), show_default=True, kernels=True)
    per_tensor: bool = option(
        "one int8 weight scale per tensor (default: per output channel)", False, kernels=True)
    exclude: tuple[str, ...] = option(
        "keep an op kind (conv2d, matmul) or node (conv2d_3) in fp32 (repeatable)", (),
        metavar="OP_OR_NODE", multiple=True, convert=tuple, kernels=True)
    accuracy_budget: float | None = option(
        "keep the most sensitive ops in fp32 until the loss vs fp32 (worst of 1 - cosine, "
        "1 - top-1 agreement) is <= X; --precision auto keeps the fastest candidate within "
        f"it (default {AUTO_BUDGET:g})", type=float, minimum=0.0, metavar="X", kernels=True)
    holdout: float | None = option(
        "share of the --calibration samples kept out of calibration for the int8 accuracy "
        "report (default: 0.2 with 10+ samples, else 0)", type=float, metavar="FRACTION",
        kernels=True)
    prune: str | float | None = option(
        "remove channels: 'zero' = all-zero filters (lossless); RATIO in (0,1) = that share "
        "of each layer's lowest-norm filters (no fine-tuning)", metavar="zero|RATIO",
        convert=parse_prune, kernels=True)
    prune_criterion: str = option(
        "filter norm that ranks filters for --prune RATIO", "l1", choices=CRITERIA,
        show_default=True, convert=check_criterion, kernels=True)
    cross_compiler: str | None = option(
        "C++ compiler that links the .so for another architecture (default for ARM "
        "targets: aarch64-linux-gnu-g++)", metavar="CXX")
    layout: str = option(
        "convolution data layout (auto: fastest for the target)", "auto", choices=LAYOUTS,
        show_default=True, kernels=True)
    winograd: bool = option(
        "3x3 stride-1 convolutions as Winograd F(4x4, 3x3) on CPUs (NHWC layout)", True,
        flag="--winograd/--no-winograd", show_default=True, kernels=True)
    precision: str | None = option(
        "fp32 (default; int8 with --quantize int8); bf16: conv2d / matmul as bf16 kernels "
        "(AVX-512 BF16 x86, BF16 ARM e.g. graviton3); fp16: fp16 weights and activations "
        "(fp16 arithmetic on ARM CPUs with FP16, e.g. rpi5, graviton3; GPUs) "
        "(= --quantize fp16); int8: calibrated int8 "
        "(= --quantize int8); auto: build fp32, "
        "bf16 (where the target has it) and int8, keep the fastest within --accuracy-budget "
        f"(default {AUTO_BUDGET:g})", choices=PRECISIONS)

    def __post_init__(self):
        # --quantize int8|fp16 and --precision int8|fp16 are one request: both fields say it
        precision = self.precision or (self.quantize if self.quantize in ("int8", "fp16")
                                       else "fp32")
        object.__setattr__(self, "precision", precision)
        if precision in ("int8", "fp16") and self.quantize is None:
            object.__setattr__(self, "quantize", precision)


CompileConfig.__doc__ = ("One frozen description of a compile, shared by the API, the CLI "
                         "and the driver. Its options (keyword, CLI flag: help):\n\n"
                         + describe(CompileConfig))
OPTIONS = options(CompileConfig)  # name -> mcc.driver.options.Option, in field order


class UnknownOption(MccError, TypeError):
    """A keyword that is no compile option: a TypeError to Python, one line to the CLI."""


def check_names(given, caller: str) -> None:
    """UnknownOption for a keyword of ``caller`` that is no CompileConfig field."""
    for name in given:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UnknownOption(f"{caller}() got an unknown option '{name}'{hint}; valid "
                                f"options: {', '.join(OPTIONS)}")


def from_cli(values: dict) -> dict:
    """The CLI's values of options as the API takes them (--bind's texts as arrays, ...)."""
    return {name: OPTIONS[name].parse(value) if OPTIONS[name].parse else value
            for name, value in values.items()}


def make_config(**given) -> CompileConfig:
    """The checked CompileConfig for mcc.compile's keywords (None: the default; each
    option's ``convert`` checks its value), with the checks that involve several options;
    one-line MccErrors."""
    check_names(given, "mcc.compile_config")
    quantize, verify = given.get("quantize"), given.get("verify")
    precision = given.get("precision")
    _check_precision_pair(precision, quantize)
    int8_like = quantize == "int8" or precision in ("int8", "auto")
    if not int8_like and (given.get("exclude") or given.get("per_tensor")
                          or given.get("accuracy_budget") is not None
                          or given.get("calibration_method") not in (None, "minmax")
                          or given.get("holdout") is not None):
        raise MccError("--calibration-method, --per-tensor, --exclude, --accuracy-budget and "
                       "--holdout apply to --precision int8 or auto (--quantize int8) only")
    if given.get("verify_inputs") is not None and verify is not None and not verify:
        raise MccError("--verify-inputs and --no-verify contradict each other")
    values = {}
    for name, opt in OPTIONS.items():
        value = given.get(name)
        if value is not None or opt.default is None:  # else: the field's default
            values[name] = opt.convert(value) if opt.convert else value
    config = CompileConfig(**values)
    config = dataclasses.replace(config,
                                 target=config.target.with_cross_compiler(config.cross_compiler))
    if config.precision == "bf16":  # x86 AVX-512 BF16 or ARM BF16
        from mcc.schedule.rules.bf16 import check_bf16_target

        check_bf16_target(config.target.tvm_target(), config.target.name)
    if config.precision == "fp16":
        check_fp16_target(config.target)
    if config.precision == "auto" and not config.target.runs_on_host():
        raise MccError(f"--precision auto measures each candidate on this machine, and a "
                       f"{config.target.name} module cannot run here "
                       f"({config.target.why_not_runnable()}); choose --precision fp32, bf16 "
                       "or int8")
    if config.precision == "auto" and config.accuracy_budget is None:
        config = dataclasses.replace(config, accuracy_budget=AUTO_BUDGET)
    return config


def _check_precision_pair(precision, quantize) -> None:
    """--quantize int8|fp16 is --precision int8|fp16; any other pair is a one-line error."""
    if precision is not None and precision not in PRECISIONS:
        raise MccError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if precision is not None and quantize is not None and precision != quantize:
        raise MccError(f"--precision {precision} and --quantize {quantize} exclude each other "
                       "(--quantize int8 is --precision int8, --quantize fp16 is --precision "
                       "fp16)")


def check_fp16_target(target: TargetPreset) -> None:
    """``--precision fp16`` on an aarch64 CPU needs FP16 arithmetic (ARMv8.2-A ``+fullfp16``):
    a one-line MccError on one without it (Cortex-A72, generic ARMv8.0-A). x86 CPUs and
    GPUs keep TVM's mixed precision (fp16 storage; x86 computes in fp32)."""
    from mcc.targets.cpu_info import arm_without_fp16

    cpu = target.tvm_target()
    if arm_without_fp16(cpu):
        mcpu = str(cpu.attrs.get("mcpu", "") or "generic")
        raise MccError(f"--precision fp16: target {target.name} ({mcpu}) lacks FP16 "
                       "arithmetic (ARMv8.2-A +fullfp16: Cortex-A76/A78/X1, Neoverse N1/V1; "
                       "presets rpi5, graviton3); use fp32 or int8")
