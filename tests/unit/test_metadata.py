"""Reading module metadata without loading the library."""

from pathlib import Path

import pytest
import tvm

from mcc.build.export import atomic_write
from mcc.errors import MccError
from mcc.runtime.metadata import read_metadata


def test_missing_module(tmp_path):
    with pytest.raises(MccError, match="module file .* not found"):
        read_metadata(tmp_path / "nope.so")


def test_not_an_elf_file(tmp_path):
    path = tmp_path / "fake.so"
    path.write_text("hello")
    with pytest.raises(MccError, match="is not a compiled module"):
        read_metadata(path)


def test_elf_without_mcc_metadata():
    runtime_lib = Path(tvm.__file__).parent / "lib" / "libtvm_runtime.so"
    with pytest.raises(MccError, match="not an mcc module"):
        read_metadata(runtime_lib)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_into_missing_directory(tmp_path):
    with pytest.raises(MccError, match="does not exist"):
        atomic_write(tmp_path / "no" / "out.so", lambda tmp: None)
