"""CUDA modules that carry compiled device code, built on a machine without a GPU.

TVM 0.27 compiles CUDA kernels to a binary only when its CUDA runtime library
loads, i.e. where the CUDA driver is installed. Elsewhere its codegen returns a
placeholder module holding the CUDA *source* (format ``cuda``), which no
machine can load. mcc therefore packs a module's imports itself:

  1. TVM serialises the import tree (``runtime.ModulePackImportsToTensor``);
  2. each ``cuda`` entry, ``[fmt][function table][code]``, gets its source
     compiled by ``nvcc`` into a fatbin (SASS for the target arch + PTX for
     newer GPUs) and is rewritten as ``["fatbin"][function table][fatbin]``,
     the format TVM's CUDA runtime loads with ``cuModuleLoadData``;
  3. the blob is linked into the ``.so`` as ``__tvm_ffi__library_bin`` via an
     assembler ``.incbin`` (fast for large weights, works for any arch).

``device_code_info(path)`` reads the fatbins back out of a built ``.so``.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from mcc.errors import MccError
from mcc.targets import TargetPreset
from mcc.targets.kinds import kind_of

FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_CUDA_KIND = struct.pack("<Q", 4) + b"cuda"


def compile_device_code(source: str, arch: str) -> bytes:
    """nvcc: CUDA source -> fatbin with SASS for ``arch`` (``sm_90``) and its PTX."""
    from mcc.build.toolchain import require_tool

    nvcc = require_tool("nvcc", f"compiling CUDA kernels for {arch}")
    number = arch.removeprefix("sm_")
    with tempfile.TemporaryDirectory(prefix="mcc-nvcc-") as workdir:
        src, out = Path(workdir) / "kernels.cu", Path(workdir) / "kernels.fatbin"
        src.write_text(source)
        # No --use_fast_math: modules are verified against ONNX Runtime at 1e-4.
        cmd = [nvcc, "--fatbin", "-O3",
               "-gencode", f"arch=compute_{number},code=sm_{number}",
               "-gencode", f"arch=compute_{number},code=compute_{number}",
               "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
               "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
               "--expt-relaxed-constexpr", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise MccError(f"nvcc failed to compile the CUDA kernels for {arch}: "
                           f"{detail[0] if detail else 'exit ' + str(proc.returncode)}")
        return out.read_bytes()


def _read_str(blob: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<Q", blob, pos)
    return blob[pos + 8:pos + 8 + length], pos + 8 + length


def compile_cuda_entries(blob: bytes, arch: str) -> tuple[bytes, int]:
    """Rewrite every source-only ``cuda`` module in a packed import blob as a fatbin.

    Returns the new blob and how many modules were compiled. The blob is
    ``[u64 size][import tree][for each module: [str kind][u64 n][n bytes payload]]``.
    """
    compiled = 0
    pos = 0
    out = bytearray()
    while True:
        hit = blob.find(_CUDA_KIND, pos)
        if hit < 0:
            break
        payload_at = hit + len(_CUDA_KIND)
        if payload_at + 8 > len(blob):
            break
        (size,) = struct.unpack_from("<Q", blob, payload_at)
        payload = blob[payload_at + 8:payload_at + 8 + size]
        rewritten = _compile_payload(payload, arch) if len(payload) == size else None
        if rewritten is None:  # bytes that merely look like a cuda entry (e.g. in weights)
            out += blob[pos:payload_at]
            pos = payload_at
            continue
        out += blob[pos:payload_at] + struct.pack("<Q", len(rewritten)) + rewritten
        pos = payload_at + 8 + size
        compiled += 1
    out += blob[pos:]
    struct.pack_into("<Q", out, 0, len(out) - 8)
    return bytes(out), compiled


def _compile_payload(payload: bytes, arch: str) -> bytes | None:
    """``[fmt][fmap][code]`` with fmt ``cuda`` -> the same entry as a fatbin; None if not one."""
    try:
        fmt, fmap_at = _read_str(payload, 0)
    except struct.error:
        return None
    if fmt != b"cuda":
        return None
    # The code is the last field; find where it starts by its length prefix.
    for code_at in range(len(payload) - 8, fmap_at - 1, -1):
        (length,) = struct.unpack_from("<Q", payload, code_at)
        if code_at + 8 + length == len(payload) and b"__global__" in payload[code_at + 8:]:
            break
    else:
        return None
    source = payload[code_at + 8:].decode()
    fatbin = compile_device_code(source, arch)
    fmt_new = b"fatbin"
    return (struct.pack("<Q", len(fmt_new)) + fmt_new + payload[fmap_at:code_at]
            + struct.pack("<Q", len(fatbin)) + fatbin)


_ASM = """\
    .section .rodata.mcc_library_bin,"a"
    .globl __tvm_ffi__library_bin
    .type __tvm_ffi__library_bin, %object
    .p2align 4
__tvm_ffi__library_bin:
    .incbin "{path}"
    .size __tvm_ffi__library_bin, . - __tvm_ffi__library_bin
    .section .note.GNU-stack,"",%progbits
"""


def device_code_packer(target: TargetPreset):
    """An ``fpack_imports`` for ``export_library`` that compiles CUDA kernels for the target."""

    def pack(module, is_system_lib, prefix, workspace_dir) -> str:
        import tvm_ffi

        if is_system_lib or prefix:
            raise MccError("CUDA modules are exported as shared libraries only")
        tensor = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(module)
        blob, _ = compile_cuda_entries(tensor.numpy().tobytes(), target.cuda_arch)
        bin_path = Path(workspace_dir) / "mcc_library_bin.bin"
        bin_path.write_bytes(blob)
        asm_path = Path(workspace_dir) / "mcc_library_bin.S"
        asm_path.write_text(_ASM.format(path=str(bin_path).replace('"', '\\"')))
        return str(asm_path)

    return pack


@contextmanager
def nvcc_for(target):
    """While building for a CUDA ``target`` (a tvm Target) where TVM's CUDA runtime is loaded
    (a GPU machine), have TVM compile kernels with mcc's nvcc call instead of its default
    NVRTC one (which needs the optional ``cuda-bindings`` package). No-op elsewhere."""
    import tvm_ffi

    if not kind_of(target).compiles_device_code or tvm_ffi.get_global_func(
            "ffi.Module.create.cuda", allow_missing=True) is None:
        yield
        return
    arch = str(target.attrs["arch"])
    previous = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)

    def compile_source(source, *_):
        return compile_device_code(str(source), arch)

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_source, override=True)
    try:
        yield
    finally:
        if previous is not None:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", previous, override=True)


def require_device_code(path: str | Path, arch: str) -> None:
    """Fail unless the built ``.so`` holds machine code (SASS) for ``arch``."""
    fatbins = device_code_info(path)
    if not any(arch in f["sass"] for f in fatbins):
        found = ", ".join(a for f in fatbins for a in f["sass"]) or "none"
        raise MccError(f"the built module holds no CUDA device code for {arch} (found: {found})")


def device_code_info(path: str | Path) -> list[dict]:
    """The fatbins inside a built ``.so``: for each, its size and the archs it holds as
    SASS (an NVIDIA ``EM_CUDA`` ELF, i.e. compiled machine code) and as PTX."""
    data = Path(path).read_bytes()
    found = []
    start = data.find(FATBIN_MAGIC)
    while start >= 0 and start + 16 <= len(data):
        # fatbin header: magic u32, version u16, header size u16, size of the entries u64
        _, _, header, size = struct.unpack_from("<IHHQ", data, start)
        fatbin = data[start:start + header + size]
        found.append({"bytes": len(fatbin), **_list_fatbin(fatbin, header)})
        start = data.find(FATBIN_MAGIC, start + max(header + size, 4))
    return found


_EM_CUDA = 190


def _list_fatbin(fatbin: bytes, header: int) -> dict:
    """Walk a fatbin's entries: ``[u16 kind][u16 version][u32 header size][u64 size]...``
    with the sm number at byte 28 of each entry header; kind 1 is PTX, 2 is an ELF cubin."""
    sass, ptx = set(), set()
    pos = header
    while pos + 32 <= len(fatbin):
        kind, _, entry_header, size = struct.unpack_from("<HHIQ", fatbin, pos)
        (sm,) = struct.unpack_from("<I", fatbin, pos + 28)
        payload = fatbin[pos + entry_header:pos + entry_header + size]
        if kind == 2 and payload[:4] == b"\x7fELF" and len(payload) > 20:
            if struct.unpack_from("<H", payload, 18)[0] == _EM_CUDA:
                sass.add(f"sm_{sm}")
        elif kind == 1:
            ptx.add(f"sm_{sm}")
        if entry_header == 0:
            break
        pos += entry_header + size
    return {"sass": sorted(sass), "ptx": sorted(ptx)}
