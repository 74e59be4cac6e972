"""Use every physical core this process may run on, unless the user set TVM_NUM_THREADS.

TVM's runtime sizes its thread pool as half the logical CPU count on x86,
assuming SMT siblings. On a machine without SMT (this project's 2-core VM,
most cloud vCPU slices) that leaves half the cores idle: every mcc module ran
on one thread. The pool is created on first use and reads TVM_NUM_THREADS
then, so this runs when ``mcc`` is imported, before any kernel executes.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Physical cores available to this process (affinity mask, SMT siblings not counted)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
        logical = psutil.cpu_count() or physical
    except ImportError:
        physical = logical = os.cpu_count() or 1
    if allowed is None:
        return physical
    # scale the allowed logical CPUs by the physical / logical ratio (1 without SMT)
    return max(1, allowed * physical // logical)


def default_thread_count() -> None:
    """Set TVM_NUM_THREADS to the usable physical cores if the user has not chosen."""
    os.environ.setdefault("TVM_NUM_THREADS", str(usable_cores()))
