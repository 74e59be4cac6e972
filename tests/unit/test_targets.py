import json

import pytest

from mcc.errors import MccError
from mcc.targets import TargetPreset, describe_presets, resolve_target


def test_presets_are_listed_with_descriptions():
    names = dict(describe_presets())
    assert {"x86", "x86-avx2", "x86-avx512"} <= set(names)
    assert all(names.values())


def test_host_target_is_detected_and_runs_here():
    preset = resolve_target(None)
    assert preset.name == "x86"
    assert preset.tvm["kind"] == "llvm" and preset.tvm["mcpu"] not in ("", "generic")
    assert preset.tvm["mtriple"].startswith("x86_64")
    assert preset.runs_on_host()


def test_fixed_preset_records_required_cpu_flags():
    preset = resolve_target("x86-avx512")
    assert preset.tvm["mcpu"] == "cascadelake"
    assert "avx512_vnni" in preset.cpu_flags
    assert TargetPreset.from_json(json.loads(json.dumps(preset.to_json()))) == preset


def test_unknown_target_lists_valid_names():
    with pytest.raises(MccError, match="unknown target 'x99'; valid targets: x86, x86-avx2"):
        resolve_target("x99")


def test_raw_json_target():
    preset = resolve_target('{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}')
    assert preset.name == "custom" and preset.arch == "x86_64"
    assert preset.tvm_target().kind.name == "llvm"


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"mcpu": "znver4"}', "must be a JSON object with a 'kind'"),
    ('{"kind": "cuda"}', "needs its GPU architecture"),
    ('{"kind": "opencl"}', "kind 'opencl' is not supported"),
    ('{"kind": "llvm", "no-such-key": 1}', "invalid TVM target"),
])
def test_bad_raw_targets(text, message):
    with pytest.raises(MccError, match=message):
        resolve_target(text)
