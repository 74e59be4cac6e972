"""Drop known-noise lines that TVM's C++ runtime writes straight to stderr.

Saving and loading a Relax module makes TVM 0.27 print one ``Warning: Scope Saving:`` /
``Warning: Scope Loaded:`` line per constant tensor (leftover LOG(WARNING)s in
src/runtime/vm/executable.cc, which no setting turns off): 170 lines for ResNet-50.
The C++ logger writes to file descriptor 2, not to Python's ``sys.stderr``, so the only
way to filter it from Python is to point fd 2 at a temp file while TVM saves or loads the
module, then pass the other lines on.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

NOISE = ("Warning: Scope Loaded:", "Warning: Scope Saving:")


@contextmanager
def quiet_tvm(noise: tuple[str, ...] = NOISE):
    """Within the block, TVM's lines containing one of ``noise`` are dropped; every other
    line written to stderr is passed on when the block ends."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(n in line for n in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()
