"""Read one named section out of an ELF64 little-endian shared object.

mcc stores a module's metadata in a ``.mcc_metadata`` section so that
``mcc info`` can read it without loading the library, even for a module built
for another architecture (x86-64 and aarch64 are both ELF64 little-endian).
"""

from __future__ import annotations

import struct
from pathlib import Path


def read_section(path: str | Path, name: str) -> bytes | None:
    """The bytes of section ``name``, or None if the file is ELF without it.

    Raises ValueError if the file is not an ELF64 little-endian object.
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        f.seek(0x28)
        (shoff,) = struct.unpack("<Q", f.read(8))
        f.seek(0x3A)
        shentsize, shnum, shstrndx = struct.unpack("<HHH", f.read(6))
        headers = []
        for index in range(shnum):
            f.seek(shoff + index * shentsize)
            sh_name, _type, _flags, _addr, offset, size = struct.unpack("<IIQQQQ", f.read(40))
            headers.append((sh_name, offset, size))
        if not headers or shstrndx >= len(headers):
            return None
        _, strtab_offset, strtab_size = headers[shstrndx]
        f.seek(strtab_offset)
        strtab = f.read(strtab_size)
        wanted = name.encode()
        for sh_name, offset, size in headers:
            end = strtab.find(b"\0", sh_name)
            if strtab[sh_name:end] == wanted:
                f.seek(offset)
                return f.read(size)
    return None
