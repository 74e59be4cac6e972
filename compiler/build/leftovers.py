"""Remove what a killed mcc run left behind: a ``mcc-build-<pid>-*`` (or ``mcc-export-``)
folder in the temp folder and a hidden ``.NAME.so.<pid>.*.tmp`` beside an output.

Names carry the owning process id: an entry whose process is gone is stale. An entry
without one (written by an older mcc) is stale after an hour. A live run's files are
never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

STALE_SECS = 3600
_TEMP_DIR = re.compile(r"^mcc-(build|export)-(?:(\d+)-)?[a-z0-9_]+$")
_TEMP_FILE = re.compile(r"^\..+?\.(?:(\d+)\.)?[a-z0-9_]{8}\.tmp$")


def pid_prefix() -> str:
    return f"{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stale(path: Path, pid: str | None) -> bool:
    if pid is not None:
        return not _alive(int(pid))
    try:
        return time.time() - path.lstat().st_mtime > STALE_SECS
    except OSError:
        return False


def clean_stale(output_dir: str | Path | None = None, say=None) -> list[Path]:
    """Remove stale leftovers from the temp folder and ``output_dir``; report them via
    ``say`` (one line). Returns what was removed; errors removing are ignored."""
    removed = []
    candidates = []
    temp = Path(tempfile.gettempdir())
    try:
        candidates += [(p, m.group(2)) for p in temp.iterdir()
                       if (m := _TEMP_DIR.match(p.name)) and p.is_dir()]
    except OSError:
        pass
    if output_dir is not None and Path(output_dir).is_dir():
        try:
            candidates += [(p, m.group(1)) for p in Path(output_dir).iterdir()
                           if (m := _TEMP_FILE.match(p.name)) and p.is_file()]
        except OSError:
            pass
    for path, pid in candidates:
        if not _stale(path, pid):
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            continue
    if removed and say is not None:
        names = ", ".join(str(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
        say(f"[mcc] removed {len(removed)} leftover(s) of an interrupted run: {names}")
    return removed
