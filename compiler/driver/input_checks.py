"""Early checks of user input that would otherwise fail deep inside a build or a run:
0-size input dimensions, inputs too large to allocate, an output folder that cannot be
written. Each is one MccError before any work (or any allocation) is done."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mcc.errors import MccError


def check_output_folder(path: str | Path, what: str = "output") -> None:
    """MccError unless ``path``'s folder exists and is writable."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    if not folder.exists():
        raise MccError(f"cannot write {what} '{path}': folder '{folder}' does not exist")
    if not folder.is_dir():
        raise MccError(f"cannot write {what} '{path}': '{folder}' is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MccError(f"cannot write {what} '{path}': folder '{folder}' is not writable")
    if Path(path).is_dir():
        raise MccError(f"cannot write {what} '{path}': it is a folder")


def available_memory() -> int | None:
    """Bytes of memory available to allocate now (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 4  # bfloat16, float8, sub-byte kinds: held in <= 4 bytes


def check_input_specs(specs, label: str = "the model") -> None:
    """MccError for an input with a negative dimension, or inputs whose fixed dims need more
    than a quarter of the memory available now (verification holds several copies). (0-size
    ONNX inputs are checked at import, where it is known what reads them.)"""
    total, biggest = 0, None
    for spec in specs:
        dims = [d for d in spec.shape if isinstance(d, int)]
        if any(d < 0 for d in dims):
            raise MccError(f"input '{spec.name}' of {label} has a negative dimension "
                           f"({spec.shape_text()})")
        nbytes = int(np.prod(dims, dtype=object)) * _itemsize(spec.dtype) if dims else 0
        total += nbytes
        if biggest is None or nbytes > biggest[1]:
            biggest = (spec, nbytes)
    available = available_memory()
    limit = available // 4 if available else 1 << 40
    if total > limit:
        spec = biggest[0]
        raise MccError(f"the inputs of {label} need {total:,} bytes ({spec.name}: "
                       f"{spec.dtype}{spec.shape_text()} alone {biggest[1]:,}), more than "
                       f"mcc allows with {available or 0:,} bytes of memory available "
                       f"(a quarter of it); use a smaller --input-shape")


def check_tuning_logs(dirs) -> None:
    """MccError for a --tuning-log that does not exist, is not a folder, or holds no
    MetaSchedule database (in it or in a <family>/ subfolder) -- never silently ignored."""
    from mcc.schedule.records import RECORD_FILE, WORKLOAD_FILE

    for d in dirs:
        path = Path(d)
        if not path.exists():
            raise MccError(f"tuning log '{path}' not found")
        if not path.is_dir():
            raise MccError(f"tuning log '{path}' is not a folder")
        databases = [p for p in [path, *sorted(q for q in path.iterdir() if q.is_dir())]
                     if (p / RECORD_FILE).is_file() or (p / WORKLOAD_FILE).is_file()]
        if not databases:
            raise MccError(f"tuning log '{path}' holds no {RECORD_FILE} (in it or in "
                           f"<family>/)")
        for db in databases:
            for name in (RECORD_FILE, WORKLOAD_FILE):
                if not (db / name).is_file():
                    raise MccError(f"tuning log '{db}' has no {name}")
