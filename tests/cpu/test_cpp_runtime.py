"""The C++ runtime on x86: mcc_run and a program linked as the bundle README says give the
same outputs as the Python runtime, and bad input is one clear line."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest

from conftest import conv_bn_model, matmul_softmax_model, two_output_model

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("g++") is None,
                                reason="needs cmake and g++ to build the C++ runtime")


@pytest.fixture(scope="module")
def x86_bundles(tmp_path_factory):
    """Bundles (mcc package) of three tiny modules compiled for this machine."""
    import mcc

    root = tmp_path_factory.mktemp("cpp")
    bundles = {}
    for name, model in [("conv_bn", conv_bn_model()), ("mlp", matmul_softmax_model()),
                        ("two_outputs", two_output_model())]:
        onnx.save(model, str(root / f"{name}.onnx"))
        mcc.compile(str(root / f"{name}.onnx")).export(root / f"{name}.so")
        bundles[name] = mcc.bundle(root / f"{name}.so", root / f"{name}-bundle")
    return bundles


def _run(*args, cwd=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("name", ["conv_bn", "mlp", "two_outputs"])
def test_runner_outputs_equal_python_runtime(x86_bundles, name, tmp_path):
    import mcc

    bundle = x86_bundles[name]
    module = mcc.load(bundle / f"{name}.so")
    rng = np.random.default_rng(7)
    args = []
    feed = {}
    for spec in module.inputs:
        shape = [d if isinstance(d, int) else 3 for d in spec.shape]  # symbolic batch = 3
        feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        np.save(tmp_path / f"{spec.name}.npy", feed[spec.name])
        args += ["-i", f"{spec.name}={tmp_path / spec.name}.npy"]
    result = _run(bundle / "bin" / "mcc_run", bundle / f"{name}.so", *args,
                  "-o", tmp_path / "out", "--repeat", "3")
    assert result.returncode == 0, result.stderr
    assert "3 run(s), median" in result.stdout
    expected = module.run(feed)
    for out_name, value in expected.items():
        got = np.load(tmp_path / "out" / f"{out_name}.npy")
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)  # same kernels, same inputs: same bits


def test_runner_lists_inputs_and_outputs(x86_bundles):
    bundle = x86_bundles["mlp"]
    result = _run(bundle / "bin" / "mcc_run", bundle / "mlp.so", "--list")
    assert result.returncode == 0, result.stderr
    assert "input   x: float32[batch,16]" in result.stdout
    assert "output  probs: float32[batch,5]" in result.stdout


def test_bundle_example_inputs_run_out_of_the_box(x86_bundles):
    bundle = x86_bundles["conv_bn"]
    readme = (bundle / "README.md").read_text()
    command = next(ln for ln in readme.splitlines() if ln.startswith("./bin/mcc_run"))
    result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=bundle)
    assert result.returncode == 0, result.stderr
    assert (bundle / "outputs" / "y.npy").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["-i", "x=WRONG"], "has shape [1,8,12,12], expected [1,3,12,12] (axis 1 must be 3)"),
    (["-i", "nope=WRONG"], "unknown input 'nope'; the model's inputs are: x"),
    ([], "missing input: -i x=FILE.npy (x: float32[1,3,12,12])"),
    (["-i", "x=/nonexistent.npy"], "cannot open '/nonexistent.npy'"),
])
def test_runner_errors_are_one_line(x86_bundles, tmp_path, args, fragment):
    bundle = x86_bundles["conv_bn"]
    np.save(tmp_path / "wrong.npy", np.zeros((1, 8, 12, 12), np.float32))
    args = [a.replace("WRONG", str(tmp_path / "wrong.npy")) for a in args]
    result = _run(bundle / "bin" / "mcc_run", bundle / "conv_bn.so", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_runner_creates_nested_output_dirs_before_running(x86_bundles, tmp_path):
    """-o a/b/c is created as mkdir -p would (the first GPU check lost every output to a
    missing parent: the runs were timed, then 'cannot write'); a path that cannot be a
    directory is one line before anything runs."""
    bundle = x86_bundles["conv_bn"]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 12, 12), np.float32))
    runner, module = bundle / "bin" / "mcc_run", bundle / "conv_bn.so"
    nested = tmp_path / "a" / "b" / "out"
    result = _run(runner, module, "-i", f"x={tmp_path / 'x.npy'}", "-o", nested)
    assert result.returncode == 0, result.stderr
    assert (nested / "y.npy").is_file()
    (tmp_path / "file").write_text("")
    result = _run(runner, module, "-i", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "file" / "out")
    assert result.returncode == 1 and "ran " not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot create output directory"), lines


def test_runner_refuses_another_architecture(x86_bundles, tmp_path):
    bundle = x86_bundles["conv_bn"]
    data = bytearray((bundle / "conv_bn.so").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # claim aarch64 in the ELF header
    fake = tmp_path / "arm.so"
    fake.write_bytes(bytes(data))
    from mcc.runtime.integrity import seal

    seal(fake)  # a consistent module, only built for another machine
    result = _run(bundle / "bin" / "mcc_run", fake, "--list")
    assert result.returncode == 1
    assert ("is built for x86 (aarch64) and cannot run on this machine: it is x86_64"
            in result.stderr)


def test_user_program_links_as_the_readme_says(x86_bundles, tmp_path):
    from mcc.cpp import SOURCE_DIR

    bundle = x86_bundles["two_outputs"]
    readme = (bundle / "README.md").read_text()
    assert "g++ -std=c++17 app.cc -Iinclude lib/libmcc_runtime.a" in readme
    shutil.copy(SOURCE_DIR / "examples" / "minimal.cc", bundle / "app.cc")
    build = subprocess.run(
        "g++ -std=c++17 app.cc -Iinclude lib/libmcc_runtime.a "
        "-Llib -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -Wl,--as-needed -ldl "
        "-Wl,-rpath,'$ORIGIN/lib' -o app", shell=True, capture_output=True, text=True, cwd=bundle)
    assert build.returncode == 0, build.stderr
    result = _run(bundle / "app", bundle / "two_outputs.so")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["pos float32 6 first 0", "neg float32 6 first -0"]


def test_package_errors_are_one_line_and_write_nothing(x86_bundles, cli, tmp_path):
    from conftest import assert_one_line_error

    not_module = tmp_path / "plain.so"
    not_module.write_bytes(b"not an ELF file at all")
    result = cli("package", not_module, "-o", tmp_path / "b1")
    assert_one_line_error(result, "'", "plain.so' is not a compiled module")
    assert not (tmp_path / "b1").exists()

    existing = x86_bundles["conv_bn"]
    result = cli("package", existing / "conv_bn.so", "-o", existing)
    assert_one_line_error(result, "exists and is not empty", "--force")
    assert (existing / "bin" / "mcc_run").is_file()  # left as it was

    result = cli("package", existing / "conv_bn.so", "-o", tmp_path / "no" / "such" / "dir")
    assert_one_line_error(result, "does not exist")


@pytest.mark.parametrize("how", ["truncated", "rodata_flipped"])
def test_runner_refuses_a_damaged_module(x86_bundles, tmp_path, how):
    from mcc.runtime.elf import section_range

    bundle = x86_bundles["conv_bn"]
    data = bytearray((bundle / "conv_bn.so").read_bytes())
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        offset, size = section_range(bundle / "conv_bn.so", ".rodata")
        for i in range(64):
            data[offset + (i * 37) % size] ^= 0xFF
    damaged = tmp_path / "damaged.so"
    damaged.write_bytes(bytes(data))
    result = _run(bundle / "bin" / "mcc_run", damaged, "--list")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "integrity check" in lines[0], lines
