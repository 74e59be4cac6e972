"""The metadata an mcc module carries: its format and :func:`read_metadata`.

The compiler writes it (mcc.build.export) as the ``.mcc_metadata`` section of the
``.so``; ``mcc info``, ``mcc.load()`` and ``mcc bundle`` read it back here without
loading the library.
"""

from __future__ import annotations

import json
from pathlib import Path

from mcc.errors import MccError
from mcc.runtime.elf import read_section

METADATA_SECTION = ".mcc_metadata"
METADATA_FORMAT = "mcc-module/1"


def read_metadata(path: str | Path) -> dict:
    """The metadata dict embedded in an mcc module, without loading the library."""
    path = Path(path)
    if not path.exists():
        raise MccError(f"module file '{path}' not found")
    try:
        raw = read_section(path, METADATA_SECTION)
    except ValueError as err:
        raise MccError(f"'{path}' is not a compiled module ({err})") from None
    except OSError as err:
        raise MccError(f"cannot read '{path}': {err.strerror}") from None
    if raw is None:
        raise MccError(f"'{path}' is a shared library but not an mcc module "
                       f"(no {METADATA_SECTION} section)")
    try:
        metadata = json.loads(raw.rstrip(b"\0").decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MccError(f"'{path}': its {METADATA_SECTION} section is damaged") from None
    if metadata.get("format") != METADATA_FORMAT:
        raise MccError(f"'{path}' has metadata format {metadata.get('format')!r}; "
                       f"this mcc reads {METADATA_FORMAT}")
    return metadata
