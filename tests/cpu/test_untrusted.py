"""Untrusted files: no code runs from a model file (issue 18)."""

import io
import os
import zipfile

import pytest

from conftest import assert_one_line_error

torch = pytest.importorskip("torch")


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_pt2(tmp_path, marker):
    """A real exported program whose pickled sample inputs call os.system."""

    class Model(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x) + 1

    good = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(Model(), (torch.randn(2, 3),)), str(good))
    payload = io.BytesIO()
    torch.save(((_Evil(f"touch {marker}"),), {}), payload)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data = payload.getvalue()
            dst.writestr(info, data)
    return good, evil


def test_evil_pt2_runs_nothing(cli, tmp_path):
    marker = tmp_path / "MARKER"
    good, evil = _evil_pt2(tmp_path, marker)
    out = tmp_path / "out"
    out.mkdir()
    result = cli("compile", evil, "-o", out / "evil.so")
    assert result.exit_code == 1
    assert_one_line_error(result, "refusing", "evil.pt2", "posix.system")
    assert not marker.exists(), "the model file ran code"
    assert list(out.iterdir()) == []
    result = cli("compile", good, "-o", out / "good.so")  # a clean archive still loads
    assert result.exit_code == 0, result.output


def test_evil_pt2_as_reference(tmp_path):
    from mcc.errors import MccError
    from mcc.frontends.references import reference_for

    marker = tmp_path / "MARKER"
    _, evil = _evil_pt2(tmp_path, marker)
    with pytest.raises(MccError, match="refusing"):
        reference_for(evil, ["y"])
    assert not marker.exists()
