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


def test_arm_and_cuda_presets_are_listed():
    names = dict(describe_presets())
    assert {"aarch64", "rpi4", "rpi5", "graviton3", "jetson-orin", "cuda", "cuda-sm75",
            "cuda-sm80", "cuda-sm86", "cuda-sm89", "cuda-sm90"} <= set(names)


@pytest.mark.parametrize("name, mcpu", [("rpi4", "cortex-a72"), ("rpi5", "cortex-a76"),
                                        ("graviton3", "neoverse-v1"), ("aarch64", "generic")])
def test_arm_presets_cross_compile(name, mcpu):
    preset = resolve_target(name)
    assert preset.arch == "aarch64" and preset.tvm["mtriple"] == "aarch64-linux-gnu"
    assert preset.tvm["mcpu"] == mcpu
    assert preset.cross_compiler == "aarch64-linux-gnu-g++"
    assert preset.family == "llvm-aarch64"
    assert "aarch64" in preset.why_not_runnable()
    assert not preset.runs_on_host()
    assert preset.with_cross_compiler("clang++").cross_compiler == "clang++"
    assert TargetPreset.from_json(json.loads(json.dumps(preset.to_json()))) == preset
    assert preset.tvm_target().attrs["mcpu"] == mcpu  # TVM / LLVM know the CPU


def test_cuda_presets_carry_the_gpu_arch():
    preset = resolve_target("cuda-sm90")
    assert preset.is_cuda and preset.cuda_arch == "sm_90" and preset.family == "cuda-sm_90"
    assert preset.arch == "x86_64" and preset.cross_compiler is None
    target = preset.tvm_target()
    assert target.kind.name == "cuda" and str(target.attrs["arch"]) == "sm_90"
    assert target.host.kind.name == "llvm"
    orin = resolve_target("jetson-orin")
    assert orin.cuda_arch == "sm_87" and orin.arch == "aarch64"
    assert orin.cross_compiler == "aarch64-linux-gnu-g++"
    assert orin.tvm_target().host.attrs["mcpu"] == "cortex-a78ae"


def test_cuda_module_without_gpu_is_not_runnable(monkeypatch):
    from mcc.targets import gpu

    monkeypatch.setattr(gpu, "local_gpu_arch", lambda: None)
    assert "needs an NVIDIA GPU" in resolve_target("cuda-sm80").why_not_runnable()
    with pytest.raises(MccError, match="target 'cuda' means this machine's NVIDIA GPU, but none "
                                       "was found .* cuda-sm75, cuda-sm80"):
        resolve_target("cuda")
    monkeypatch.setattr(gpu, "local_gpu_arch", lambda: "sm_86")
    assert resolve_target("cuda-sm80").why_not_runnable() is None
    assert "sm_90" in resolve_target("cuda-sm90").why_not_runnable()


def test_raw_aarch64_and_cuda_targets():
    arm = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}')
    assert arm.arch == "aarch64" and arm.cross_compiler == "aarch64-linux-gnu-g++"
    gpu = resolve_target({"kind": "cuda", "arch": "sm_86"})
    assert gpu.is_cuda and gpu.cuda_arch == "sm_86" and gpu.tvm["host"]["kind"] == "llvm"
