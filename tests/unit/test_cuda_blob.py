"""The rewrite of TVM's source-only CUDA modules into fatbin modules (no nvcc needed here)."""

import struct

from mcc.build import cuda


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


def test_on_a_gpu_machine_tvm_compiles_kernels_with_mcc_nvcc(monkeypatch):
    """Where TVM's CUDA runtime is loaded, its compile callback is mcc's nvcc for the arch."""
    import tvm
    import tvm_ffi

    monkeypatch.setattr(cuda, "compile_device_code", lambda source, arch: f"{arch}:{source}")
    fake_runtime = tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is None
    if fake_runtime:  # stands in for libtvm_runtime_cuda.so's registration on a GPU machine
        tvm_ffi.register_global_func("ffi.Module.create.cuda", lambda *args: None)
    before = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    try:
        with cuda.nvcc_for(tvm.target.Target({"kind": "cuda", "arch": "sm_80"})):
            callback = tvm_ffi.get_global_func("tvm_callback_cuda_compile")
            assert callback("__global__ void k() {}") == "sm_80:__global__ void k() {}"
        after = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
        assert (after is None) == (before is None)
        assert after is None or after.same_as(before)  # TVM's own callback is back
    finally:
        if fake_runtime:
            tvm_ffi.remove_global_func("ffi.Module.create.cuda")


def test_cpu_targets_leave_tvm_alone(monkeypatch):
    import tvm
    import tvm_ffi

    before = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
    with cuda.nvcc_for(tvm.target.Target({"kind": "llvm"})):
        now = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
        assert (now is None) == (before is None)
