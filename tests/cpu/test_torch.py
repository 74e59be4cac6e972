"""The PyTorch path: nn.Module + example inputs, and saved torch.export programs (.pt2)."""

import json

import numpy as np
import pytest

import mcc

torch = pytest.importorskip("torch")


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return torch.softmax(self.fc(y.mean((2, 3))), dim=-1)


def _net():
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def test_module_with_example_inputs_matches_eager():
    net = _net()
    compiled = mcc.compile(net, example_inputs=(torch.randn(2, 3, 16, 16),))
    assert compiled.report["verify"]["reference"] == "pytorch"
    assert compiled.inputs[0].shape == (2, 3, 16, 16)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = net(torch.from_numpy(x)).detach().numpy()
    got = next(iter(compiled.run({compiled.inputs[0].name: x}).values()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_module_without_example_inputs_is_refused():
    with pytest.raises(mcc.MccError, match="needs example_inputs"):
        mcc.compile(_net())


def test_pt2_with_dynamic_batch_through_the_cli(cli, tmp_path):
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(_net(), (torch.randn(2, 3, 16, 16),),
                                  dynamic_shapes={"x": {0: batch}})
    path = tmp_path / "net.pt2"
    torch.export.save(program, str(path))

    out = tmp_path / "net.so"
    result = cli("compile", path, "-o", out)
    assert result.exit_code == 0, result.output
    assert "vs pytorch: max abs err" in result.stderr
    meta = json.loads(cli("info", out, "--json").stdout)
    assert meta["source"]["format"] == "pt2"
    assert isinstance(meta["inputs"][0]["shape"][0], str)  # symbolic batch kept

    module = mcc.load(out)
    eager = program.module()
    for n in (1, 5):
        x = np.random.default_rng(n).standard_normal((n, 3, 16, 16)).astype(np.float32)
        got = module.run({"x": x})[module.outputs[0].name]
        np.testing.assert_allclose(got, eager(torch.from_numpy(x)).detach().numpy(),
                                   rtol=1e-4, atol=1e-6)

    fixed = tmp_path / "fixed.so"
    result = cli("compile", path, "--input-shape", "x=3,3,16,16", "-o", fixed)
    assert result.exit_code == 0, result.output
    assert json.loads(cli("info", fixed, "--json").stdout)["inputs"][0]["shape"] == [3, 3, 16, 16]


def test_corrupt_pt2_is_one_line_error(cli, tmp_path):
    from conftest import assert_one_line_error

    path = tmp_path / "broken.pt2"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert_one_line_error(cli("compile", path, "-o", tmp_path / "x.so"),
                          "is not a valid torch.export program")
    assert not (tmp_path / "x.so").exists()
