"""One frozen description of a compile, shared by the API, the CLI and the driver."""

from __future__ import annotations

from dataclasses import dataclass, field

from mcc.targets import TargetPreset

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class CompileConfig:
    target: TargetPreset
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, hash=False)
    # --bind: graph inputs frozen to these values (numpy arrays) before import (mcc.driver.bind)
    bind: dict = field(default_factory=dict, hash=False, compare=False)
    tuning_logs: tuple[str, ...] = ()  # extra MetaSchedule log dirs besides tuning_logs/
    verify: bool = True
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    seed: int = 0  # seed of the verification inputs
    # verify on this feed (.npz keyed by input name) instead of synthetic inputs
    verify_inputs: str | None = None
    # sample inputs (.npz / directory, mcc.driver.sample_data) for calibration and accuracy reports
    calibration: str | None = None
    # structured pruning (mcc.driver.pruning): None, "zero" (lossless) or a ratio in (0, 1)
    prune: str | float | None = None
    prune_criterion: str = "l1"  # filter norm ranking a ratio prune: "l1" or "l2"
    layout: str = "auto"  # conv data layout: NCHW, NHWC, NCHWc, auto (mcc.passes.layout)
    winograd: bool = True  # 3x3 stride-1 NHWC convs as Winograd F(4x4, 3x3) on CPUs
    # quantization (mcc.driver.quantization): "int8" / "fp16" / None, and how to calibrate int8
    quantize: str | None = None
    calibration_method: str = "minmax"  # minmax | percentile | entropy
    per_tensor: bool = False  # one weight scale per tensor instead of per output channel
    exclude: tuple[str, ...] = ()  # op kinds or node names kept in fp32
    accuracy_budget: float | None = None  # max accepted loss, see mcc.driver.quantization
    holdout: float | None = None  # share of samples kept for the accuracy report (None: auto)
    precision: str = "fp32"  # "bf16": conv2d / matmul as bf16 kernels (mcc.passes.bf16)
