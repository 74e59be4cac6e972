"""Every bad input: one 'error:' line on stderr, non-zero exit, no traceback, no output file."""

from pathlib import Path

import numpy as np
import pytest
import tvm
from onnx import helper

from conftest import TINY_MODELS, assert_one_line_error, make_model


@pytest.fixture
def compile_fails(cli, tmp_path):
    """Run `mcc compile ... -o out.so`, check it failed cleanly and wrote nothing."""

    def run(*args, fragments=()):
        out = tmp_path / "out" / "model.so"
        out.parent.mkdir(exist_ok=True)
        result = cli("compile", *args, "-o", out)
        line = assert_one_line_error(result, *fragments)
        assert list(out.parent.iterdir()) == [], "a failed compile left a file behind"
        return line

    return run


def test_missing_file(compile_fails, tmp_path):
    compile_fails(tmp_path / "nope.onnx", fragments=["model file", "nope.onnx' not found"])


def test_unknown_extension(compile_fails, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello")
    compile_fails(path, fragments=["expected an ONNX file (.onnx) or a torch.export program"])


def test_text_file_named_onnx(compile_fails, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("this is not a model\n" * 10)
    compile_fails(path, fragments=["model.onnx' is not a valid ONNX model"])


def test_truncated_onnx(compile_fails, save_onnx):
    path = save_onnx(TINY_MODELS["conv_bn"]())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    compile_fails(path, fragments=["is not a valid ONNX model"])


def test_unsupported_op_names_op_node_and_opset(compile_fails, save_onnx):
    model = make_model([helper.make_node("Relu", ["x"], ["r"], name="act"),
                        helper.make_node("Det", ["r"], ["y"], name="determinant")],
                       [("x", [3, 3])], [("y", [])])
    compile_fails(save_onnx(model), fragments=[
        "unsupported ONNX op 'Det' (domain ai.onnx, opset 17) at node 'determinant'"])


def test_custom_domain_op(compile_fails, save_onnx):
    model = make_model([helper.make_node("FancyGelu", ["x"], ["y"], name="g", domain="com.acme")],
                       [("x", [3])], [("y", [3])])
    model.opset_import.append(helper.make_opsetid("com.acme", 1))
    compile_fails(save_onnx(model), fragments=["unsupported ONNX op 'FancyGelu' (domain com.acme"])


def test_unknown_target_lists_valid_ones(compile_fails, save_onnx):
    compile_fails(save_onnx(TINY_MODELS["conv"]()), "--target", "pentium3",
                  fragments=["unknown target 'pentium3'; valid targets: x86, x86-avx2, x86-avx512"])


def test_input_shape_for_unknown_input(compile_fails, save_onnx):
    compile_fails(save_onnx(TINY_MODELS["conv"]()), "--input-shape", "image=1,3,16,16",
                  fragments=["--input-shape names 'image'", "has inputs: x"])


def test_input_shape_contradicting_a_fixed_dim(compile_fails, save_onnx):
    compile_fails(save_onnx(TINY_MODELS["conv"]()), "--input-shape", "x=1,3,17,16",
                  fragments=["axis 2 is fixed to 16 in the model"])


def test_symbolic_dim_that_must_be_fixed(compile_fails, save_onnx, cli, tmp_path):
    """Tile by the input's own shape cannot stay symbolic in TVM: say which flag fixes it."""
    model = make_model([helper.make_node("Shape", ["x"], ["s"]),
                        helper.make_node("Tile", ["x", "s"], ["y"])],
                       [("x", ["n", 4])], [("y", ["a", "b"])])
    path = save_onnx(model)
    compile_fails(path, fragments=["input 'x' has symbolic shape ['n', 4]",
                                   "fix it with --input-shape x=1,4"])
    result = cli("compile", path, "--input-shape", "x=2,4", "-o", tmp_path / "fixed.so")
    assert result.exit_code == 0, result.output


def test_verification_failure_writes_nothing(compile_fails, save_onnx, monkeypatch):
    """A module that disagrees with the reference is never written."""
    import mcc.frontends.onnx_import as onnx_import

    real = onnx_import.ort_reference

    def skewed(raw, names):
        run = real(raw, names)
        return lambda feed: {k: v + 1e-2 for k, v in run(feed).items()}

    monkeypatch.setattr(onnx_import, "ort_reference", skewed)
    compile_fails(save_onnx(TINY_MODELS["residual"]()),
                  fragments=["verification failed: output 'y' differs from onnxruntime",
                             "max abs err 0.01"])


@pytest.mark.parametrize("feed, fragments", [
    ({"image": np.zeros((1, 3, 16, 16), np.float32)},
     ["unknown input 'image'; the model's inputs are: x"]),
    ({"x": np.zeros((1, 3, 16, 15), np.float32)},
     ["input 'x' has shape [1, 3, 16, 15], expected [1,3,16,16]"]),
    ({"x": np.zeros((1, 3, 16, 16), np.int32)}, ["input 'x' has dtype int32, expected float32"]),
])
def test_run_with_wrong_inputs(feed, fragments, save_onnx, cli, tmp_path):
    out = tmp_path / "m.so"
    assert cli("compile", save_onnx(TINY_MODELS["conv"]()), "-o", out).exit_code == 0
    np.savez(tmp_path / "bad.npz", **feed)
    result = cli("run", out, "--inputs", tmp_path / "bad.npz", "--output", tmp_path / "o.npz")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "o.npz").exists()


def test_run_and_info_on_things_that_are_not_modules(cli, tmp_path):
    assert_one_line_error(cli("run", tmp_path / "missing.so"), "module file", "not found")
    fake = tmp_path / "fake.so"
    fake.write_bytes(b"\x7fELF garbage")
    assert_one_line_error(cli("info", fake), "is not a compiled module")
    runtime = Path(tvm.__file__).parent / "lib" / "libtvm_runtime.so"
    assert_one_line_error(cli("run", runtime), "not an mcc module")


def test_run_with_unreadable_inputs_file(save_onnx, cli, tmp_path):
    out = tmp_path / "m.so"
    cli("compile", save_onnx(TINY_MODELS["conv"]()), "-o", out)
    (tmp_path / "in.npz").write_text("nope")
    assert_one_line_error(cli("run", out, "--inputs", tmp_path / "in.npz"),
                          "is not a readable .npz file")
    assert_one_line_error(cli("run", out, "--inputs", tmp_path / "none.npz"),
                          "inputs file", "not found")


def test_module_for_a_cpu_this_machine_lacks_is_refused(save_onnx, cli, tmp_path, monkeypatch):
    out = tmp_path / "m.so"
    cli("compile", save_onnx(TINY_MODELS["conv"]()), "--target", "x86-avx512", "-o", out)
    import mcc.targets as targets

    monkeypatch.setattr(targets, "host_cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert_one_line_error(cli("run", out), "is built for x86-avx512", "cannot run on this machine")


def test_onnx_checker_error_is_one_line(compile_fails, save_onnx):
    model = TINY_MODELS["conv"]()
    model.graph.node[0].input[1] = "no_such_weight"
    compile_fails(save_onnx(model), fragments=["is not a valid ONNX model"])


def test_graph_pass_failure_names_symbolic_inputs():
    """A graph pass that fails on a model with symbolic input dims says how to fix them."""
    from tvm.script import ir as I
    from tvm.script import relax as R

    from mcc.build.pipeline import graph_pass_error

    @I.ir_module
    class Symbolic:
        @R.function
        def main(x: R.Tensor(("n", 3, "w"), "float32")) -> R.Tensor(("n", 3, "w"), "float32"):
            return R.exp(x)

    error = graph_pass_error("FoldConstant", AssertionError("emit_te needs a ShapeExpr"), Symbolic)
    assert str(error) == ("graph pass FoldConstant failed on this model: "
                          "emit_te needs a ShapeExpr (inputs with symbolic dims: x[n,3,w]; "
                          "fix them, e.g. --input-shape x=1,3,1)")
