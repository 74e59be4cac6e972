"""A module's integrity digest: sha256 of the whole ``.so`` with its digest zeroed.

The digest lives in a small ELF section ``.mcc_digest`` that the link reserves
(a placeholder compiled in beside the metadata) and that :func:`seal` fills in
after linking: ``mcc-sha256:<64 hex digits>``. :func:`verify` recomputes it over
the file with that section's bytes zeroed, so a truncated file or any changed
byte (code, weights, metadata) is caught before the library is ever dlopen'ed.
The C++ runtime (runtime/cpp/src/runtime.cc) does the same check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mcc.errors import MccError
from mcc.runtime.elf import section_range

DIGEST_SECTION = ".mcc_digest"
_PREFIX = b"mcc-sha256:"
_PLACEHOLDER = _PREFIX + b"0" * 64 + b"\0"


def digest_source() -> str:
    """C++ for the placeholder section, compiled into the module with its metadata."""
    data = ",".join(str(b) for b in _PLACEHOLDER)
    return (f'extern "C" __attribute__((used, visibility("default"), '
            f'section("{DIGEST_SECTION}")))\n'
            f"const unsigned char mcc_digest[{len(_PLACEHOLDER)}] = {{{data}}};\n")


def _digest(data: bytearray, offset: int, size: int) -> str:
    data[offset:offset + size] = bytes(size)
    return hashlib.sha256(data).hexdigest()


def seal(path: str | Path) -> str:
    """Write the digest of ``path`` (just linked) into its digest section; returns it."""
    where = section_range(path, DIGEST_SECTION)
    if where is None or where[1] < len(_PLACEHOLDER):
        raise MccError(f"internal: the linked module '{path}' has no {DIGEST_SECTION} section")
    offset, size = where
    data = bytearray(Path(path).read_bytes())
    digest = _digest(data, offset, size)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(_PREFIX + digest.encode() + b"\0")
    return digest


def check(path: str | Path) -> tuple[bool | None, str]:
    """(True, digest) if intact; (False, why) if damaged; (None, why) if it has no digest.

    Raises MccError if the file is missing or is not an ELF file at all.
    """
    path = Path(path)
    if not path.is_file():
        raise MccError(f"module file '{path}' not found")
    try:
        where = section_range(path, DIGEST_SECTION)
    except ValueError as err:
        if "not an ELF" in str(err) or "not a 64-bit" in str(err):
            raise MccError(f"'{path}' is not a compiled module ({err})") from None
        return False, f"{err}"
    except OSError as err:
        raise MccError(f"cannot read '{path}': {err.strerror}") from None
    if where is None:
        return None, "it has no integrity digest"
    offset, size = where
    data = bytearray(path.read_bytes())
    stored = bytes(data[offset:offset + size])
    if not stored.startswith(_PREFIX) or len(stored) < len(_PLACEHOLDER):
        return False, "its digest section is damaged"
    expected = stored[len(_PREFIX):len(_PREFIX) + 64].decode("ascii", "replace")
    actual = _digest(data, offset, size)
    if actual != expected:
        return False, "its contents do not match its sha256 digest (damaged or modified)"
    return True, actual


def require_intact(path: str | Path) -> None:
    """MccError unless ``path`` carries a digest that matches its contents."""
    ok, detail = check(path)
    if ok:
        return
    if ok is None:
        from mcc.runtime.elf import read_section

        try:
            has_metadata = read_section(path, ".mcc_metadata") is not None
        except ValueError:
            has_metadata = False
        if not has_metadata:
            raise MccError(f"'{path}' is a shared library but not an mcc module "
                           f"(no .mcc_metadata section)")
        raise MccError(f"integrity check failed for '{path}': {detail} "
                       f"(built by an older mcc? rebuild it)")
    raise MccError(f"integrity check failed for '{path}': {detail}; refusing to load it")
