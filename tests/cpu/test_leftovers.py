"""A killed run's leftovers (temp build folder, hidden .tmp beside the output) are removed
by the next run, which says so; a live run's are not."""

import os
import subprocess
import sys
import time

from conftest import conv_model


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_compile_cleans_stale_leftovers(cli, save_onnx, tmp_path, monkeypatch):
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    dead = _dead_pid()
    out = tmp_path / "out"
    out.mkdir()
    stale_dir = temp / f"mcc-build-{dead}-abcd1234"
    stale_dir.mkdir()
    (stale_dir / "module.so").write_bytes(b"half")
    stale_tmp = out / f".model.so.{dead}.abcd1234.tmp"
    stale_tmp.write_bytes(b"half")
    old_legacy = out / ".model.so.zzzz1234.tmp"
    old_legacy.write_bytes(b"old")
    os.utime(old_legacy, (time.time() - 7200, time.time() - 7200))
    live = out / f".model.so.{os.getppid()}.live1234.tmp"  # a live process: kept
    live.write_bytes(b"busy")
    result = cli("compile", save_onnx(conv_model()), "-o", out / "model.so", "--no-verify")
    assert result.exit_code == 0, result.output
    assert "removed 3 leftover(s) of an interrupted run" in result.stderr
    assert not stale_dir.exists() and not stale_tmp.exists() and not old_legacy.exists()
    assert live.exists()
    assert sorted(p.name for p in out.iterdir()) == [live.name, "model.so"]
