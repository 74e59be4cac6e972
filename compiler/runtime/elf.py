"""Read one named section out of an ELF64 little-endian shared object.

mcc stores a module's metadata in a ``.mcc_metadata`` section so that
``mcc info`` can read it without loading the library, even for a module built
for another architecture (x86-64 and aarch64 are both ELF64 little-endian).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path


def section_range(path: str | Path, name: str) -> tuple[int, int] | None:
    """(file offset, size) of section ``name``, or None if the file is ELF without it.

    Raises ValueError if the file is not an ELF64 little-endian object, or if its
    headers point outside the file (truncated or damaged).
    """
    file_size = os.path.getsize(path)

    def read(f, at: int, fmt: str):
        n = struct.calcsize(fmt)
        if at < 0 or at + n > file_size:
            raise ValueError("truncated or damaged ELF headers")
        f.seek(at)
        return struct.unpack(fmt, f.read(n))

    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        (shoff,) = read(f, 0x28, "<Q")
        shentsize, shnum, shstrndx = read(f, 0x3A, "<HHH")
        if shnum and (shentsize < 40 or shoff + shnum * shentsize > file_size):
            raise ValueError("truncated or damaged ELF headers")
        headers = [read(f, shoff + index * shentsize, "<IIQQQQ") for index in range(shnum)]
        headers = [(sh_name, offset, size) for sh_name, _t, _f, _a, offset, size in headers]
        if not headers or shstrndx >= len(headers):
            return None
        _, strtab_offset, strtab_size = headers[shstrndx]
        if strtab_offset + strtab_size > file_size:
            raise ValueError("truncated or damaged ELF headers")
        f.seek(strtab_offset)
        strtab = f.read(strtab_size)
        wanted = name.encode()
        for sh_name, offset, size in headers:
            end = strtab.find(b"\0", sh_name)
            if strtab[sh_name:end] == wanted:
                if offset + size > file_size:
                    raise ValueError(f"truncated: section {name} runs past the end of the file")
                return offset, size
    return None


def read_section(path: str | Path, name: str) -> bytes | None:
    """The bytes of section ``name``, or None if the file is ELF without it.

    Raises ValueError if the file is not an ELF64 little-endian object or is damaged.
    """
    where = section_range(path, name)
    if where is None:
        return None
    with open(path, "rb") as f:
        f.seek(where[0])
        return f.read(where[1])
