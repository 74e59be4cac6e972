"""Integrity: a damaged or truncated module is one clean error before it is loaded."""

from __future__ import annotations

import shutil

import onnx
import pytest

from conftest import assert_one_line_error, conv_bn_model


@pytest.fixture(scope="module")
def module_so(tmp_path_factory):
    import mcc

    root = tmp_path_factory.mktemp("integrity")
    onnx.save(conv_bn_model(), str(root / "m.onnx"))
    return mcc.compile(str(root / "m.onnx")).export(root / "m.so")


def _damaged(module_so, tmp_path, how):
    from mcc.runtime.elf import section_range

    path = tmp_path / f"{how}.so"
    shutil.copyfile(module_so, path)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) * 2 // 3]
    elif how == "text_zeroed":
        offset, size = section_range(path, ".text")
        data[offset:offset + min(size, 256)] = bytes(min(size, 256))
    elif how == "rodata_flipped":
        offset, size = section_range(path, ".rodata")
        for i in range(64):
            data[offset + (i * 37) % size] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_intact_module_verifies(cli, module_so):
    result = cli("info", module_so)
    assert result.exit_code == 0, result.output
    assert "integrity: ok" in result.output


@pytest.mark.parametrize("how", ["truncated", "text_zeroed", "rodata_flipped"])
def test_damaged_module_is_refused(cli, module_so, tmp_path, how):
    import mcc
    from mcc.errors import MccError

    path = _damaged(module_so, tmp_path, how)
    result = cli("run", path)
    assert result.exit_code == 1
    assert_one_line_error(result, "integrity check")
    with pytest.raises(MccError, match="integrity check"):
        mcc.load(path)
    result = cli("info", path)
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert_one_line_error(result, "integrity check FAILED")


def test_damaged_elf_header_is_clean(cli, module_so, tmp_path):
    from mcc.errors import MccError
    from mcc.runtime.metadata import read_metadata

    for size in (20, 64, 100):
        path = tmp_path / f"head{size}.so"
        path.write_bytes(module_so.read_bytes()[:size])
        with pytest.raises(MccError):
            read_metadata(path)
        assert_one_line_error(cli("run", path))
