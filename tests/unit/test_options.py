"""One list of options: every CompileConfig field is a flag of `mcc compile` and a keyword
of mcc.compile, and a keyword that is no field is a clear error."""

import dataclasses
import inspect

import pytest

import mcc
from mcc.cli import compile as compile_command
from mcc.cli import tune as tune_command
from mcc.driver.config import OPTIONS, CompileConfig, UnknownOption, from_cli, make_config
from mcc.errors import MccError

FIELDS = [f.name for f in dataclasses.fields(CompileConfig)]


def _flags(command) -> dict[str, list[str]]:
    return {p.name: p.opts + p.secondary_opts for p in command.params}


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_a_cli_flag(name):
    flags = _flags(compile_command)
    assert name in flags, f"CompileConfig.{name} has no `mcc compile` flag"
    assert OPTIONS[name].cli_flag.split("/")[0] in flags[name]
    assert OPTIONS[name].help, f"CompileConfig.{name} has no help"


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_is_a_compile_keyword(name):
    explicit = inspect.signature(mcc.compile).parameters
    assert name in explicit or "options" in explicit
    config = mcc.compile_config(**{name: None})  # None: the default
    assert getattr(config, name) == getattr(make_config(), name)


def test_kernel_options_are_tune_flags():
    flags = _flags(tune_command)
    assert [n for n in FIELDS if OPTIONS[n].kernels and n not in flags] == []


def test_cli_defaults_are_the_api_defaults():
    ctx = compile_command.make_context("compile", ["model.onnx"])
    given = {k: v for k, v in ctx.params.items() if k in OPTIONS}
    assert make_config(**from_cli(given)) == make_config()


def test_cli_values_are_parsed_as_the_api_takes_them():
    ctx = compile_command.make_context("compile", [
        "model.onnx", "--input-shape", "x=1,3", "--bind", "k=2", "--no-verify",
        "--no-winograd", "--prune", "0.25", "--quantize", "int8", "--exclude", "matmul"])
    config = make_config(**from_cli({k: v for k, v in ctx.params.items() if k in OPTIONS}))
    assert config.input_shapes == {"x": (1, 3)} and config.bind["k"].tolist() == [2]
    assert (config.verify, config.winograd, config.prune) == (False, False, 0.25)
    assert config.exclude == ("matmul",)


@pytest.mark.parametrize("call", [
    lambda: mcc.compile("model.onnx", quantise="int8"),
    lambda: mcc.compile_config(quantise="int8"),
    lambda: mcc.tune("model.onnx", quantise="int8"),
])
def test_unknown_keyword_is_a_clear_error(call):
    with pytest.raises(UnknownOption) as err:
        call()
    message = str(err.value)
    assert "unknown option 'quantise'" in message and "did you mean 'quantize'" in message
    assert "valid options: target, input_shapes" in message
    assert isinstance(err.value, TypeError) and isinstance(err.value, MccError)


def test_cross_option_checks_keep_their_messages():
    with pytest.raises(MccError, match="apply to --precision int8 or auto"):
        mcc.compile_config(per_tensor=True)
    with pytest.raises(MccError, match="contradict each other"):
        mcc.compile_config(verify=False, verify_inputs="x.npz")
    with pytest.raises(MccError, match="--prune must be 'zero' or a ratio"):
        mcc.compile_config(prune="half")
    assert mcc.compile_config(cross_compiler="my-g++").target.cross_compiler == "my-g++"


@pytest.mark.parametrize("target", ["rpi5", "graviton3"])
def test_fp16_on_arm_with_fp16_arithmetic(target):
    from mcc.targets.cpu_info import has_fp16_arithmetic

    for given in ({"precision": "fp16"}, {"quantize": "fp16"},
                  {"precision": "fp16", "quantize": "fp16"}):
        config = mcc.compile_config(target=target, **given)
        assert (config.precision, config.quantize) == ("fp16", "fp16")
        assert has_fp16_arithmetic(config.target.tvm_target())
    assert "+fullfp16" in config.target.tvm["mattr"]
    assert "asimdhp" in config.target.cpu_flags


@pytest.mark.parametrize("target, cpu", [("rpi4", "cortex-a72"), ("aarch64", "generic")])
def test_fp16_refused_on_arm_without_fp16_arithmetic(target, cpu):
    for given in ({"precision": "fp16"}, {"quantize": "fp16"}):
        with pytest.raises(MccError) as err:
            mcc.compile_config(target=target, **given)
        message = str(err.value)
        assert "\n" not in message
        assert f"target {target} ({cpu}) lacks FP16 arithmetic" in message
        assert "+fullfp16" in message


def test_fp16_elsewhere_and_bad_pairs():
    from mcc.targets.cpu_info import has_fp16_arithmetic

    # x86 and GPUs keep TVM's mixed precision (fp32 accumulation on x86)
    config = mcc.compile_config(target="x86-avx2", precision="fp16")
    assert config.quantize == "fp16" and not has_fp16_arithmetic(config.target.tvm_target())
    assert mcc.compile_config(target="cuda-sm80", quantize="fp16").precision == "fp16"
    with pytest.raises(MccError, match="--precision fp16 and --quantize int8 exclude"):
        mcc.compile_config(precision="fp16", quantize="int8")
    with pytest.raises(MccError, match="--precision bf16 and --quantize fp16 exclude"):
        mcc.compile_config(precision="bf16", quantize="fp16")


@pytest.mark.parametrize("target, cpu, instead", [
    ("rpi5", "cortex-a76", "use --precision fp16"), ("rpi4", "cortex-a72", "use fp32 or int8"),
    ("aarch64", "generic", "use fp32 or int8")])
def test_bf16_on_arm_without_bf16_is_refused_with_the_alternative(target, cpu, instead):
    with pytest.raises(MccError) as err:
        mcc.compile_config(target=target, precision="bf16")
    message = str(err.value)
    assert "\n" not in message
    assert f"target {target} ({cpu}) lacks the ARM bf16 feature" in message
    assert message.endswith(instead)


def test_bf16_on_arm_with_bf16():
    """graviton3 (Neoverse V1, +bf16) takes --precision bf16: its kernels use BFDOT."""
    from mcc.schedule.rules.bf16_isa import NEON, bf16_isa

    config = mcc.compile_config(target="graviton3", precision="bf16")
    assert bf16_isa(config.target.tvm_target()) is NEON


def test_cli_bf16_refusal_on_arm_is_one_line(cli, save_onnx, tmp_path):
    from conftest import assert_one_line_error, conv_model

    path = save_onnx(conv_model())
    result = cli("compile", path, "-o", tmp_path / "m.so", "--target", "rpi5",
                 "--precision", "bf16")
    assert_one_line_error(result, "rpi5 (cortex-a76) lacks the ARM bf16 feature",
                          "use --precision fp16")


def test_cli_fp16_refusal_is_one_line(cli, save_onnx, tmp_path):
    from conftest import assert_one_line_error, conv_model

    path = save_onnx(conv_model())
    for flag in ("--precision", "--quantize"):
        result = cli("compile", path, "-o", tmp_path / "m.so", "--target", "rpi4", flag, "fp16")
        assert_one_line_error(result, "rpi4 (cortex-a72) lacks FP16 arithmetic", "+fullfp16")
