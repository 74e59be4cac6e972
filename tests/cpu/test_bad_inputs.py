"""Bad input that used to end in an internal error: one 'error:' line, exit 1, no file."""

import os

import onnx
import pytest
from onnx import helper

from conftest import TINY_MODELS, assert_one_line_error, make_model


@pytest.fixture
def compile_fails(cli, tmp_path):
    def run(*args, fragments=()):
        out = tmp_path / "out" / "model.so"
        out.parent.mkdir(exist_ok=True)
        result = cli("compile", *args, "-o", out)
        assert result.exit_code == 1, result.output
        line = assert_one_line_error(result, *fragments)
        assert list(out.parent.iterdir()) == [], "a failed compile left a file behind"
        return line

    return run


def _relu(shape):
    return make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", shape)], [("y", shape)])


def test_zero_size_input_dimension(compile_fails, save_onnx):
    compile_fails(save_onnx(_relu([0, 3])), fragments=["input 'x'", "0-size dimension"])


def test_opset_from_the_future(compile_fails, save_onnx):
    model = _relu([2, 3])
    model.opset_import[0].version = 99
    compile_fails(save_onnx(model), fragments=["claims ONNX opset 99"])


def test_byte_flipped_model(compile_fails, save_onnx, tmp_path):
    data = bytearray(save_onnx(TINY_MODELS["conv_bn"]()).read_bytes())
    for i in range(0, len(data), 7):
        data[i] ^= 0x5A
    path = tmp_path / "flipped.onnx"
    path.write_bytes(bytes(data))
    compile_fails(path, fragments=["flipped.onnx"])


def _external(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    onnx.save(TINY_MODELS["conv_bn"](), str(folder / "m.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    return folder / "m.onnx"


def test_external_data_missing(compile_fails, tmp_path):
    path = _external(tmp_path, "missing")
    os.remove(path.parent / "w.bin")
    compile_fails(path, fragments=["external data file 'w.bin'", "not found"])


def test_external_data_escaping_the_folder(compile_fails, tmp_path):
    path = _external(tmp_path, "escape")
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(model, str(path))
    compile_fails(path, fragments=["'../../etc/passwd' outside the model's folder"])


def test_input_too_large_to_allocate(compile_fails, save_onnx):
    compile_fails(save_onnx(_relu(["n", 3])), "--input-shape", "x=100000000000,3",
                  fragments=["need 1,200,000,000,000 bytes"])


def test_missing_output_folder_checked_first(cli, save_onnx, tmp_path):
    result = cli("compile", save_onnx(_relu([2, 3])), "-o", tmp_path / "nope" / "m.so")
    assert result.exit_code == 1
    assert_one_line_error(result, "folder", "does not exist")
    assert "[mcc] import" not in result.stderr  # refused before compiling


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder(cli, save_onnx, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    result = cli("compile", save_onnx(_relu([2, 3])), "-o", folder / "m.so")
    assert_one_line_error(result, "not writable")


def test_tuning_log_that_does_not_exist(compile_fails, save_onnx, tmp_path):
    compile_fails(save_onnx(_relu([2, 3])), "--tuning-log", tmp_path / "nolog",
                  fragments=["tuning log", "not found"])


def test_tuning_log_without_workloads(compile_fails, save_onnx, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "database_tuning_record.json").write_text("[0, [[], [1e-3], {}, []]]\n")
    compile_fails(save_onnx(_relu([2, 3])), "--tuning-log", log,
                  fragments=["has no database_workload.json"])


def test_tuning_log_of_random_bytes(compile_fails, save_onnx, tmp_path):
    import numpy as np

    log = tmp_path / "log"
    log.mkdir()
    rng = np.random.default_rng(0)
    for name in ("database_tuning_record.json", "database_workload.json"):
        (log / name).write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    compile_fails(save_onnx(TINY_MODELS["conv"]()), "--tuning-log", log,
                  fragments=["tuning log"])


def test_tuning_log_with_malformed_entries(compile_fails, save_onnx, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "database_workload.json").write_text('[null, "x"]\n')
    (log / "database_tuning_record.json").write_text('[0, [[], [0.001], {"kind": "llvm"}, []]]\n')
    compile_fails(save_onnx(_relu([2, 3])), "--tuning-log", log, fragments=["malformed record"])


def test_empty_npz_feed(cli, tmp_path, save_onnx):
    import mcc

    module = mcc.compile(save_onnx(_relu([2, 3])), verify=False).export(tmp_path / "m.so")
    (tmp_path / "in.npz").write_bytes(b"")
    result = cli("run", module, "--inputs", tmp_path / "in.npz")
    assert result.exit_code == 1
    assert_one_line_error(result, "is not a readable .npz file")
