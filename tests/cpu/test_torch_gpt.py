"""A GPT-2-style decoder (plain torch, no transformers) through torch.export: token and
position embeddings (position ids from the padding mask, as Hugging Face computes them:
a cumsum of a bool tensor), causal self-attention with a torch.tril mask, tanh GELU,
LayerNorm, residuals and a tied LM head; it compiles and matches eager PyTorch. The
SDPA variant views SDPA's output as Hugging Face's Conv1D does (torch's decomposition
then fails on the view unless mcc retries with reshapes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

import mcc  # noqa: E402

PAD = 0


class Block(nn.Module):
    def __init__(self, d, heads, ctx, mask):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads, self.mask = heads, mask
        tril = torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)).view(1, 1, ctx, ctx)
        self.register_buffer("causal", tril, persistent=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.mask == "sdpa_conv1d":  # Hugging Face's default: SDPA, then Conv1D's
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # addmm of a view
            y = y.transpose(1, 2).reshape(b, t, d)
            y = torch.addmm(self.proj.bias, y.view(-1, d), self.proj.weight.t()).view(b, t, d)
            x = x + y
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        causal = self.causal[:, :, :t, :t]
        if self.mask == "masked_fill_inf":
            att = att.masked_fill(~causal, float("-inf"))
        else:  # Hugging Face's eager GPT-2: where(mask, att, finfo.min)
            att = torch.where(causal, att, torch.tensor(torch.finfo(att.dtype).min))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TinyGPT(nn.Module):
    def __init__(self, mask, vocab=100, d=32, heads=4, layers=2, ctx=16):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads, ctx, mask) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied

    def forward(self, ids):
        pos = ((ids != PAD).cumsum(-1) - 1).clamp(min=0)  # bool cumsum -> int64
        x = self.wte(ids) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


@pytest.mark.parametrize("mask", ["masked_fill_inf", "where_finfo_min", "sdpa_conv1d"])
def test_gpt2_like_decoder_matches_eager(mask):
    torch.manual_seed(0)
    model = TinyGPT(mask).eval()
    ids = torch.randint(1, 100, (2, 12))
    ids[1, :3] = PAD  # left padding: positions restart after it
    compiled = mcc.compile(model, example_inputs=(ids,))  # verified against eager
    assert compiled.report["verify"]["ok"]
    (ours,) = compiled.run({"ids": ids.numpy()}).values()
    with torch.no_grad():
        expected = model(ids).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_integer_scans_and_clamps_match_torch():
    """cumsum of bool and cumprod of int32 are int64 in torch (TVM kept the input dtype:
    a bool cumsum failed to build, an int32 cumprod overflowed); an integer clamp with one
    bound failed to fold (+-inf as an integer)."""

    class Scans(nn.Module):
        def forward(self, ids):
            return ((ids != PAD).cumsum(-1), (ids.to(torch.int32) + 7).cumprod(-1),
                    ids.clamp(min=30), ids.clamp(max=60), ids.clamp(20, 70),
                    ids.clamp_min(40))

    ids = torch.randint(0, 100, (2, 12))
    compiled = mcc.compile(Scans(), example_inputs=(ids,))
    assert compiled.report["verify"]["ok"]
    ours = list(compiled.run({"ids": ids.numpy()}).values())
    expected = [t.numpy() for t in Scans()(ids)]
    assert len(ours) == len(expected) == 6
    for got, want in zip(ours, expected):
        assert got.dtype == want.dtype == np.int64
        np.testing.assert_array_equal(got, want)
