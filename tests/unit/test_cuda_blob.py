"""The rewrite of TVM's source-only CUDA modules into fatbin modules (no nvcc needed here)."""

import struct

from mcc import cuda


def _str(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def _blob(*entries: bytes) -> bytes:
    body = b"\x01\x02IMPORT-TREE" + b"".join(entries)
    return struct.pack("<Q", len(body)) + body


def _cuda_entry(fmt: bytes, fmap: bytes, code: bytes) -> bytes:
    payload = _str(fmt) + fmap + _str(code)
    return _str(b"cuda") + _str(payload)


SOURCE = b'extern "C" __global__ void k(float* x) { x[0] = 1; }\n'
FMAP = struct.pack("<Q", 1) + _str(b"k") + _str(b"k") + b"\x03\x00"


def test_source_entry_becomes_a_fatbin_entry(monkeypatch):
    seen = []

    def fake_nvcc(source, arch):
        seen.append((source, arch))
        return b"FATBIN-" + arch.encode()

    monkeypatch.setattr(cuda, "compile_device_code", fake_nvcc)
    host = _str(b"relax.VMExecutable") + _str(b"weights" + _str(b"cuda") + b"!")
    blob = _blob(host, _cuda_entry(b"cuda", FMAP, SOURCE))
    out, count = cuda.compile_cuda_entries(blob, "sm_90")
    assert count == 1 and seen == [(SOURCE.decode(), "sm_90")]
    expected = _blob(host, _cuda_entry(b"fatbin", FMAP, b"FATBIN-sm_90"))
    assert out == expected
    assert struct.unpack_from("<Q", out)[0] == len(out) - 8


def test_already_compiled_entries_are_left_alone(monkeypatch):
    monkeypatch.setattr(cuda, "compile_device_code", lambda *a: b"never")
    blob = _blob(_cuda_entry(b"fatbin", FMAP, b"\x50\xed\x55\xba..."))
    assert cuda.compile_cuda_entries(blob, "sm_80") == (blob, 0)


def test_fatbin_listing_reads_sass_and_ptx_archs(tmp_path):
    elf = b"\x7fELF" + bytes(14) + struct.pack("<H", 190) + bytes(40)
    ptx = b"compressed-ptx"

    def entry(kind, sm, payload):
        header = struct.pack("<HHIQ", kind, 0x101, 64, len(payload)) + bytes(12)
        header += struct.pack("<I", sm) + bytes(64 - 32)
        return header + payload

    entries = entry(1, 86, ptx) + entry(2, 86, elf)
    fatbin = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(entries)) + entries
    so = tmp_path / "m.so"
    so.write_bytes(b"prefix" + fatbin + b"suffix")
    assert cuda.device_code_info(so) == [{"bytes": len(fatbin), "sass": ["sm_86"],
                                          "ptx": ["sm_86"]}]
