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
    tuning_logs: tuple[str, ...] = ()  # extra MetaSchedule log dirs besides tuning_logs/
    verify: bool = True
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    seed: int = 0  # seed of the verification inputs
    layout: str = "auto"  # conv data layout: NCHW, NHWC or auto (per target, mcc.passes.layout)
