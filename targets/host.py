"""What this machine's CPU is, for the default ``x86`` target and for run-here checks."""

from __future__ import annotations

from functools import cache


@cache
def host_cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@cache
def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def host_tvm_target() -> dict:
    """The host CPU as a TVM target dict: LLVM's detected CPU model plus the core count.

    TVM reports the triple LLVM was built with (e.g. ``x86_64-conda-linux-gnu``);
    we normalise it to the plain Linux triple the system toolchain uses.
    """
    import tvm

    detected = tvm.target.Target.from_device(tvm.cpu())
    mcpu = str(detected.attrs.get("mcpu", "")) or "x86-64"
    arch = str(detected.attrs.get("mtriple", "x86_64")).split("-")[0]
    return {"kind": "llvm", "mtriple": f"{arch}-linux-gnu", "mcpu": mcpu,
            "num-cores": _physical_cores()}
