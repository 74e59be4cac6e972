"""mcc.driver.layout_choice: --layout auto builds each candidate layout and keeps the fastest."""

import numpy as np
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
    compiled = mcc.compile(model)  # verified against ONNX Runtime inside
    choice = compiled.report["layout_choice"]
    assert set(choice["timings_ms"]) == {"NHWC", "NCHWc"}
    assert all(0 < ms < 1e4 for ms in choice["timings_ms"].values())
    assert choice["timings_ms"][choice["chosen"]] == min(choice["timings_ms"].values())
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
