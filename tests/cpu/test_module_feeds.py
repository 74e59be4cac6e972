"""The model-aware synthetic feeds (mcc.frontends.feeds) beyond verification: a built module
records its inputs' value ranges, and `mcc run` without --inputs, `mcc bench`, the
prune drift measure and --calibration random draw from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_bert


@pytest.fixture(scope="module")
def bert_so(tmp_path_factory):
    """tiny BERT (token-type table of 2 rows, 30 words, 16 positions), symbolic dims."""
    import onnx

    import mcc

    root = tmp_path_factory.mktemp("bert")
    onnx_path = root / "bert.onnx"
    onnx.save(tiny_bert(positions=True), str(onnx_path))
    out = root / "bert.so"
    mcc.compile(onnx_path).export(out)
    return out, onnx_path


@pytest.fixture
def recorded_feeds(monkeypatch):
    """Every feed a loaded module is run on."""
    from mcc.runtime import Module

    feeds, runner = [], Module.runner

    def record(self, feed):
        feeds.append({k: np.asarray(v) for k, v in feed.items()})
        return runner(self, feed)

    monkeypatch.setattr(Module, "runner", record)
    return feeds


def _in_range(feed):
    assert feed["token_type_ids"].min() >= 0 and feed["token_type_ids"].max() < 2
    assert feed["input_ids"].min() >= 0 and feed["input_ids"].max() < 30
    assert set(np.unique(feed["attention_mask"])) <= {0, 1}


def test_module_metadata_records_feed_rules(bert_so):
    import mcc

    feeds = mcc.load(bert_so[0]).metadata["feeds"]
    assert feeds["token_type_ids"] == {"low": 0, "high": 2, "nonzero": False}
    assert feeds["input_ids"]["high"] == 30


def test_mcc_run_without_inputs_draws_in_range(cli, bert_so, recorded_feeds, tmp_path):
    result = cli("run", bert_so[0], "--output", tmp_path / "out.npz")
    assert result.exit_code == 0, result.output
    assert recorded_feeds
    for feed in recorded_feeds:
        _in_range(feed)


def test_mcc_bench_draws_in_range(cli, bert_so, recorded_feeds):
    result = cli("bench", bert_so[0], "--repeat", "3", "--reference", bert_so[1])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.output.lower()  # the reference accepted the feed
    assert recorded_feeds
    for feed in recorded_feeds:
        _in_range(feed)


def test_rules_rederived_from_onnx_for_modules_without_them(bert_so):
    """A module built before the rules were recorded: re-derived from its ONNX model."""
    import mcc
    from mcc.frontends.feeds import module_rules

    metadata = dict(mcc.load(bert_so[0]).metadata)
    del metadata["feeds"]
    assert module_rules(metadata, bert_so[1])["token_type_ids"].high == 2
    metadata["source"] = {"format": "onnx", "path": str(bert_so[1])}
    assert module_rules(metadata)["token_type_ids"].high == 2
    metadata["source"] = {"format": "onnx", "path": "/nonexistent/model.onnx"}
    assert module_rules(metadata) == {}


def test_random_samples_follow_rules():
    from mcc.driver.sample_data import random_samples
    from mcc.frontends.feeds import feed_plan, rules_from_json, rules_to_json
    from mcc.runtime.tensors import TensorSpec

    rules = rules_from_json(json.loads(json.dumps(rules_to_json(feed_plan(tiny_bert()).rules))))
    specs = [TensorSpec(n, (2, 64), "int64")
             for n in ("input_ids", "attention_mask", "token_type_ids")]
    for feed in random_samples(specs, 4, rules=rules):
        _in_range(feed)
