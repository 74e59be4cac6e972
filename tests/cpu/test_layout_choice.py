"""mcc.driver.layout_choice: --layout auto builds each candidate layout and keeps the fastest."""

import itertools

import numpy as np
import pytest
import tvm
from test_layout import inverted_residual

import mcc
from mcc.driver import layout_choice
from mcc.driver.config import CompileConfig
from mcc.errors import MccError
from mcc.frontends import import_model
from mcc.targets import resolve_target


def test_auto_times_each_candidate_and_keeps_the_fastest(monkeypatch):
    monkeypatch.setattr(layout_choice, "MEASURE_MIN_CONV_FLOPS", 0)
    model = inverted_residual(2)
    threads = tvm.get_global_func("runtime.NumThreads")
    before = threads()
    compiled = mcc.compile(model)  # verified against ONNX Runtime inside
    assert threads() == before  # timed on one thread, the pool then given back its threads
    choice = compiled.report["layout_choice"]
    assert set(choice["timings_ms"]) == {"NHWC", "NCHWc"}
    assert all(0 < ms < 1e4 for ms in choice["timings_ms"].values())
    assert choice["chosen"] in choice["timings_ms"]
    assert compiled.metadata["layout_choice"] == choice
    feed = {"x": np.random.default_rng(0).standard_normal((1, 16, 8, 8), dtype=np.float32)}
    np.testing.assert_allclose(compiled.run(feed)["y"], compiled.reference(feed)["y"],
                               rtol=1e-4, atol=1e-4)


def test_small_models_explicit_layouts_and_cross_targets_are_not_measured(monkeypatch):
    mod = import_model(inverted_residual(1), {}, None).mod
    host = CompileConfig(target=resolve_target(None))
    assert layout_choice.layouts_to_measure(mod, host) == ()  # a few kFLOPs: not worth it
    monkeypatch.setattr(layout_choice, "MEASURE_MIN_CONV_FLOPS", 0)
    assert layout_choice.layouts_to_measure(mod, host) == ("NHWC", "NCHWc")
    explicit = CompileConfig(target=resolve_target(None), layout="NHWC")
    assert layout_choice.layouts_to_measure(mod, explicit) == ()
    arm = CompileConfig(target=resolve_target("rpi4"))
    assert layout_choice.layouts_to_measure(mod, arm) == ()


def test_no_buildable_candidate_is_one_error_naming_each():
    calls = []

    def lower(layout):
        calls.append(layout)
        raise MccError(f"{layout} does not build")

    try:
        layout_choice.choose_layout(("NHWC", "NCHWc"), lower, {}, [], say=lambda _: None)
    except MccError as err:
        assert "NHWC: NHWC does not build" in str(err) and "NCHWc" in str(err)
    else:
        raise AssertionError("no candidate built, yet no error")
    assert calls == ["NHWC", "NCHWc"]


def test_another_layout_must_be_margin_faster_than_the_default():
    """Load that comes and goes only adds time: each candidate's least loaded block counts."""
    margin, load = layout_choice.MARGIN, [1.0, 3.0, 1.2, 2.5, 1.0, 4.0, 1.1]

    def blocks(nhwc, nchwc):
        return {"NHWC": [nhwc * f for f in load], "NCHWc": [nchwc * f for f in load]}

    assert layout_choice.pick(blocks(1.0, 1.0 - margin / 2)) == "NHWC"  # within noise
    assert layout_choice.pick(blocks(1.0, 1.0 - 2 * margin)) == "NCHWc"
    assert layout_choice.pick(blocks(1.0, 1.5)) == "NHWC"
    assert layout_choice.pick({"NHWC": [1.0]}) == "NHWC"  # one candidate built


def test_block_times_alternate_and_load_spikes_do_not_flip_the_choice():
    """A fake CPU clock: NHWC costs 4.5 ms a call, NCHWc 5.0; other processes' load lands
    on NHWC's blocks (its first 15 timed calls cost 3x), as on a loaded machine. A mean
    would flip the choice; the medians stay the steady costs."""
    now, calls = [0.0], []
    costs = {"NHWC": 4.5e-3, "NCHWc": 5.0e-3}

    def runner(name):
        def run(_feed):
            spiked = name == "NHWC" and 1 <= sum(c == name for c in calls) <= 15
            now[0] += costs[name] * (3 if spiked else 1)
            calls.append(name)
        return run

    blocks = layout_choice.block_times({n: runner(n) for n in costs}, {}, clock=lambda: now[0])
    best = {name: min(ms) for name, ms in blocks.items()}
    assert best == pytest.approx({"NHWC": 4.5, "NCHWc": 5.0})
    assert layout_choice.pick(blocks) == "NHWC"
    # after one sizing call each, blocks of 2 calls, the order reversed each round
    runs = [(name, len(list(group))) for name, group in itertools.groupby(calls[2:])]
    assert runs[:3] == [("NHWC", 2), ("NCHWc", 4), ("NHWC", 4)]


def test_a_candidate_that_cannot_convert_is_dropped_not_built_as_nchw(monkeypatch):
    """Only the default candidate falls back to the imported layout where TVM cannot
    convert the model: a later one doing the same would build and time NCHW (a
    dynamically quantized OCR spent 50 s of its compile on that)."""
    import sys

    def cannot_convert(mod, lanes):
        raise RuntimeError("not supported type in emit_te")

    monkeypatch.setattr(layout_choice, "MEASURE_MIN_CONV_FLOPS", 0)
    monkeypatch.setattr(sys.modules["mcc.passes.layout"], "_convert_blocked", cannot_convert)
    choice = mcc.compile(inverted_residual(2)).report["layout_choice"]
    assert choice["chosen"] == "NHWC" and set(choice["timings_ms"]) == {"NHWC"}
    assert "ConvertLayout(NCHWc)" in choice["skipped"]["NCHWc"], choice
