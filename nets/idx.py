"""The IDX reader (the file format of MNIST and Fashion-MNIST) and its DataError.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data:

    magic  = 0x00 0x00 <type> <ndim>      type 0x08 = unsigned byte (the only type read here)
    dims   = ndim x uint32, big-endian    images: (count, rows, cols); labels: (count,)
    data   = prod(dims) bytes, row-major

Files may be gzip-compressed; gzip is recognised by its magic bytes (1f 8b), not by the file name.

    images, labels = read_pair("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    # images: (N, rows, cols) uint8, labels: (N,) uint8 in 0..num_classes-1

Every problem with a file raises DataError with one line naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy

from backend.errors import NetsError

__all__ = [
    "DataError",
    "read_idx",
    "read_idx_bytes",
    "parse_idx",
    "read_images",
    "read_labels",
    "read_pair",
    "check_labels",
    "check_counts",
]

GZIP_MAGIC = b"\x1f\x8b"
UNSIGNED_BYTE = 0x08
# The IDX type codes, to name the type of a file we refuse.
TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
REDOWNLOAD = "re-download it or replace it with a good copy"


def _count(number: int, noun: str) -> str:
    """A number with its noun, singular for one: "1 byte", "2 bytes"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


class DataError(NetsError, ValueError):
    """A dataset file is missing, unreadable or malformed; the message is one line saying what to do."""


def read_idx_bytes(path) -> bytes:
    """The bytes of an IDX file, decompressed when the file starts with the gzip magic bytes.

    Raises DataError when the file is missing, unreadable, or a corrupt or truncated gzip stream.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path or download the dataset again.") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an IDX file; name the file itself.") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataError(f"{path} is a truncated gzip file (the stream ends early); {REDOWNLOAD}.") from None
    except (OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} is a corrupt gzip file ({error}); {REDOWNLOAD}.") from None


def _describe_magic(data: bytes) -> str:
    head = data[:4]
    hint = ""
    if head.lstrip()[:1] == b"<":
        hint = " (it looks like an HTML page, perhaps an error page saved by a download)"
    return f"0x{head.hex()}{hint}"


def parse_idx(data: bytes, path, ndim: int | None = None) -> numpy.ndarray:
    """Decode the bytes of an unsigned-byte IDX file into a uint8 array of the declared shape.

    data: the (decompressed) file contents; path: used only in messages.
    ndim: the number of dimensions the caller needs (3 for images, 1 for labels), or None for any.
    Returns a writable uint8 array of shape dims.
    Raises DataError for a wrong magic number, a type other than unsigned byte, the wrong number of
    dimensions, and data shorter (truncated) or longer (trailing bytes) than the header declares.
    """
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes); {REDOWNLOAD}.")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path} is not an IDX file: its magic number {_describe_magic(data)} does not start with two zero bytes; "
            f"{REDOWNLOAD}."
        )
    type_code, file_ndim = data[2], data[3]
    if type_code != UNSIGNED_BYTE:
        type_name = TYPE_NAMES.get(type_code, "unknown")
        raise DataError(
            f"{path} has IDX data type 0x{type_code:02x} ({type_name}) in its magic number 0x{data[:4].hex()}; "
            f"only 0x08 (unsigned byte, as in MNIST) is supported."
        )
    if ndim is not None and file_ndim != ndim:
        expected = {3: "an images file has 3 (count, rows, cols)", 1: "a labels file has 1 (count)"}.get(
            ndim, f"{ndim} were expected"
        )
        swapped = " Are the images and labels files swapped?" if {file_ndim, ndim} == {1, 3} else ""
        raise DataError(f"{path} has {_count(file_ndim, 'dimension')} in its IDX header, but {expected}.{swapped}")
    header_size = 4 + 4 * file_ndim
    if len(data) < header_size:
        raise DataError(
            f"{path} is truncated inside its header ({len(data)} of {header_size} bytes); {REDOWNLOAD}."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(file_ndim))
    declared = 1
    for size in shape:
        declared *= size
    present = len(data) - header_size
    shape_text = " x ".join(str(size) for size in shape)
    if present < declared:
        raise DataError(
            f"{path} is truncated: its header declares {shape_text} = {declared} bytes of data but only {present} "
            f"are present; {REDOWNLOAD}."
        )
    if present > declared:
        raise DataError(
            f"{path} has {_count(present - declared, 'unexpected byte')} after the {declared} its header declares "
            f"({shape_text}); {REDOWNLOAD}."
        )
    return numpy.frombuffer(data, dtype=numpy.uint8, offset=header_size).reshape(shape).copy()


def read_idx(path, ndim: int | None = None) -> numpy.ndarray:
    """Read an unsigned-byte IDX file (raw or gzip) into a uint8 array of its declared shape."""
    return parse_idx(read_idx_bytes(path), path, ndim)


def read_images(path) -> numpy.ndarray:
    """Read an images file: -> (N, rows, cols) uint8."""
    return read_idx(path, ndim=3)


def check_labels(labels: numpy.ndarray, path, num_classes: int = 10) -> numpy.ndarray:
    """Return labels unchanged, or raise DataError naming the first label outside 0..num_classes-1."""
    bad = numpy.flatnonzero(labels >= num_classes)
    if bad.size:
        index = int(bad[0])
        raise DataError(
            f"{path} has label {int(labels[index])} at index {index} ({_count(bad.size, 'label')} out of range in all); "
            f"labels must be 0..{num_classes - 1}, so the file is corrupt or not a labels file of this dataset."
        )
    return labels


def read_labels(path, num_classes: int = 10) -> numpy.ndarray:
    """Read a labels file: -> (N,) uint8, each in 0..num_classes-1."""
    return check_labels(read_idx(path, ndim=1), path, num_classes)


def read_pair(images_path, labels_path, num_classes: int = 10) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Read an images file and its labels file: -> images (N, rows, cols) uint8, labels (N,) uint8.

    Raises DataError when either file is bad or when they hold different numbers of examples.
    """
    images = read_images(images_path)
    labels = read_labels(labels_path, num_classes)
    check_counts(images, labels, images_path, labels_path)
    return images, labels


def check_counts(images, labels, images_path, labels_path) -> None:
    """Raise DataError when an images file and its labels file hold different numbers of examples."""
    if len(images) != len(labels):
        raise DataError(
            f"{os.fspath(images_path)} holds {len(images)} images but {os.fspath(labels_path)} holds "
            f"{len(labels)} labels; the two files must come from the same release, so re-download them together."
        )
