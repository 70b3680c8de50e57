"""Test helpers that build hostile files cheaply: small zip and gzip files that inflate to gigabytes.

    stream, crc = zeros_deflate(prefix, 2**30)              # raw deflate of prefix + 1 GiB of zeros, ~1 MiB
    write_zip(path, {"fc1.weight.npy": (stream, crc, len(prefix) + 2**30)})
    write_zip(path, {**members_of("good.npz"), "notes.txt": stored(b"hello")})
    zeros_npz(path, {"fc1.weight": (4000, 4000), ...})     # a bare .npz of zero float32 arrays, ~1 KiB per MiB
    gzip_path.write_bytes(gzip_of(prefix, zeros=400 * 2**20))
    png_path.write_bytes(png_of_zeros(10_000, 10_000))      # a black 10000x10000 PNG of about 100 KiB
    assert peak_of(lambda: read(path)) < MEMORY_BOUND         # what reading it cost, by tracemalloc

The deflate stream repeats one compressed block of zeros (each block starts afresh after a full flush, so
copies of it chain into a valid stream), which takes milliseconds where compressing a gigabyte takes seconds.
"""

from __future__ import annotations

import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy

__all__ = ["gzip_of", "members_of", "npy_header", "png_of_zeros", "stored", "write_zip", "zeros_deflate", "zeros_npz",
           "zeros_of_layers"]

BLOCK = 2**20

# A crafted file is a few MB at most but claims gigabytes; reading (and refusing) it may cost at most this much.
# Measured with tracemalloc (numpy reports its array allocations to it), so the bound holds on any machine.
MEMORY_BOUND = 32 * 2**20


def peak_of(function) -> int:
    """The peak bytes traced while function() runs."""
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def npy_header(shape, dtype="<f4") -> bytes:
    """The .npy header (magic, version 1.0, header dict) of an array of this shape and dtype, without its data."""
    header = {"descr": numpy.dtype(dtype).str, "fortran_order": False, "shape": tuple(shape)}
    import io

    buffer = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _fresh_block(data: bytes, mode: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(mode)


def zeros_deflate(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """(raw deflate stream, crc32) of `prefix` followed by `zeros` zero bytes."""
    repeats, rest = divmod(zeros, BLOCK)
    zero_block = bytes(BLOCK)
    stream = _fresh_block(prefix, zlib.Z_FULL_FLUSH) + _fresh_block(zero_block, zlib.Z_FULL_FLUSH) * repeats
    stream += _fresh_block(bytes(rest), zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(repeats):
        crc = zlib.crc32(zero_block, crc)
    return stream, zlib.crc32(bytes(rest), crc)


def stored(data: bytes) -> tuple[bytes, int, int]:
    """A member's (raw deflate, crc32, size) for these bytes."""
    return _fresh_block(data, zlib.Z_FINISH), zlib.crc32(data), len(data)


def members_of(path) -> dict:
    """The members of an existing zip (an .npz) as write_zip takes them, re-deflated."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: stored(archive.read(info)) for info in archive.infolist()}


def write_zip(path, members: dict) -> Path:
    """A zip file of deflated members: {name: (raw deflate stream, crc32, uncompressed size)}; -> path."""
    path = Path(path)
    body, directory = bytearray(), bytearray()
    for name, (stream, crc, size) in members.items():
        encoded = name.encode()
        offset = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(stream), size, len(encoded), 0)
        body += encoded + stream
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(stream), size,
                                 len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def zeros_npz(path, shapes: dict) -> Path:
    """A bare .npz (np.savez of a state_dict) whose arrays, {name: shape}, are float32 zeros, deflated; -> path."""
    members = {}
    for name, shape in shapes.items():
        header, size = npy_header(shape, "<f4"), 4 * int(numpy.prod(shape))
        members[f"{name}.npy"] = (*zeros_deflate(header, size), len(header) + size)
    return write_zip(path, members)


def zeros_of_layers(path, layers: int = 14, side: int = 4000) -> Path:
    """A bare .npz of an MLP with `layers` zero side x side layers (each under the per-member bomb bound), then 10
    outputs: 14 of 4000x4000 declare 855 MiB in 0.8 MiB of deflated zeros."""
    sizes = [side] * (layers + 1) + [10]
    shapes = {}
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        shapes[f"fc{index}.weight"], shapes[f"fc{index}.bias"] = (fan_out, fan_in), (fan_out,)
    return zeros_npz(path, shapes)


def gzip_of(prefix: bytes, zeros: int) -> bytes:
    """A gzip file of `prefix` followed by `zeros` zero bytes."""
    stream, crc = zeros_deflate(prefix, zeros)
    header = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
    return header + stream + struct.pack("<II", crc, (len(prefix) + zeros) & 0xFFFFFFFF)



def png_of_zeros(width: int, height: int, channels: int = 1) -> bytes:
    """A valid 8-bit PNG, grey (channels 1) or RGB (3), every pixel 0: each row is a 0 filter byte and zeros, so
    the image data is one run of zeros, deflated as zeros_deflate does and wrapped as zlib (Adler-32 in closed form)."""
    raw = height * (1 + width * channels)
    stream, _ = zeros_deflate(b"", raw)
    adler = ((raw % 65521) << 16) | 1  # a = 1 + sum of the bytes (all 0), b = the sum of a after each byte
    data = b"\x78\x01" + stream + struct.pack(">I", adler)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
