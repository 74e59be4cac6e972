"""Whether this machine has an NVIDIA GPU, and which, for the ``cuda`` target and run checks.

TVM's CUDA runtime library loads only where the CUDA driver (libcuda.so.1) is
installed; without it ``tvm.cuda(0).exist`` is False, which is what we want.
"""

from __future__ import annotations

from functools import cache

from mcc.errors import MccError

CUDA_ARCH_PRESETS = ("cuda-sm75", "cuda-sm80", "cuda-sm86", "cuda-sm89", "cuda-sm90")


@cache
def local_gpu_arch() -> str | None:
    """``sm_XY`` of GPU 0, or None without a usable GPU and driver."""
    try:
        import tvm

        device = tvm.cuda(0)
        if not device.exist:
            return None
        return "sm_" + device.compute_version.replace(".", "")
    except Exception:  # no CUDA runtime in this TVM build, or a broken driver
        return None


def local_gpu_target(name: str = "cuda") -> dict:
    """The local GPU as a TVM target dict, with this CPU as its host."""
    from mcc.targets.host import host_tvm_target

    arch = local_gpu_arch()
    if arch is None:
        raise MccError(f"target '{name}' means this machine's NVIDIA GPU, but none was found "
                       "(no GPU or no CUDA driver); to build for a GPU elsewhere pick one of "
                       f"{', '.join(CUDA_ARCH_PRESETS)}")
    host = host_tvm_target()
    host.pop("num-cores", None)
    return {"kind": "cuda", "arch": arch, "host": host}
