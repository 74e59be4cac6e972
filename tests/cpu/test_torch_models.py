"""torch.export of common architectures (small widths) compiles and matches eager PyTorch.

``mcc.compile`` verifies every build against eager PyTorch on seeded inputs; the
tests check that verification ran and passed, and compare once more on fresh data.
"""

from __future__ import annotations

import numpy as np
import pytest

import mcc

torch = pytest.importorskip("torch")
nn = torch.nn

from models import EncoderLayer  # noqa: E402  (benchmarks/models.py, after torch is known)


class TinyResNet(nn.Module):
    """Stem, two BasicBlocks (one strided with a 1x1 downsample), global pool, FC."""

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.down(x))

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.Sequential(self.Block(8, 8, 1), self.Block(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1)
        return self.fc(torch.flatten(x, 1))


class TinyMobileNet(nn.Module):
    """MobileNetV2 inverted residuals: 1x1 expand, depthwise 3x3, ReLU6, 1x1 project."""

    class Inverted(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.body = nn.Sequential(
                nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                nn.BatchNorm2d(hidden), nn.ReLU6(),
                nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
            self.Inverted(8, 8, 1, 4), self.Inverted(8, 16, 2, 4), self.Inverted(16, 16, 1, 4))
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class LSTMTagger(nn.Module):
    """Two-layer LSTM over a sequence, then a per-step linear head."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)


def _randomized(model):
    torch.manual_seed(0)
    model = model.eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


CASES = {
    "resnet": (TinyResNet, (1, 3, 16, 16)),
    "mobilenet_v2": (TinyMobileNet, (1, 3, 16, 16)),
    # benchmarks/models.py's BERT layer at small width
    "transformer_encoder": (lambda: EncoderLayer(hidden=32, heads=4, ffn=64), (2, 10, 32)),
    "lstm": (LSTMTagger, (2, 5, 12)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_torch_export_compiles_and_matches_eager(name):
    torch.manual_seed(0)
    cls, shape = CASES[name]
    model = _randomized(cls())
    example = torch.randn(*shape)
    compiled = mcc.compile(model, example_inputs=(example,))
    assert compiled.report["verify"]["ok"] and compiled.report["verify"]["reference"] == "pytorch"
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    ours = next(iter(compiled.run({compiled.inputs[0].name: x}).values()))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
