"""The IDX reader (the file format of MNIST and Fashion-MNIST) and its DataError.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the data:

    magic  = 0x00 0x00 <type> <ndim>      type 0x08 = unsigned byte (the only type read here)
    dims   = ndim x uint32, big-endian    images: (count, rows, cols); labels: (count,)
    data   = prod(dims) bytes, row-major

Files may be gzip-compressed; gzip is recognised by its magic bytes (1f 8b), not by the file name. The header
is read and checked first, then only the data it declares, so a small file that inflates to gigabytes costs no
more than its header's claim (and a claim out of all proportion to the file's size is refused unread).
Only regular files are read: a FIFO would block forever.

    images, labels = read_pair("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    # images: (N, rows, cols) uint8, labels: (N,) uint8 in 0..num_classes-1

Every problem with a file raises DataError with one line naming the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path

import numpy

from nets.errors import NetsError

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


# Trailing bytes after the declared data are counted up to this many (beyond it the message says "more than").
TRAILING_COUNT_LIMIT = 2**20
# A gzip file declaring more than BOMB_THRESHOLD bytes at over BOMB_RATIO times its own size is a decompression
# bomb: real image files compress by 2-5x.
BOMB_RATIO = 100
BOMB_THRESHOLD = 64 * 2**20
CHUNK = 2**22


def _open_regular_file(path):
    """Open `path` for reading, accepting regular files only (a FIFO would block, a device never end)."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError
        if not stat.S_ISREG(mode):
            raise DataError(f"{path} is not a regular file (a FIFO, device or socket); name the IDX file itself.")
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path or download the dataset again.") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an IDX file; name the file itself.") from None
    except OSError as error:
        raise DataError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None


def _read_up_to(stream, count: int, into: bytearray | None = None) -> bytearray:
    """Append at most `count` bytes from `stream` to `into` (a new bytearray by default), in chunks: memory grows
    with the bytes present, not with `count`."""
    data = bytearray() if into is None else into
    goal = len(data) + count
    while len(data) < goal:
        chunk = stream.read(min(CHUNK, goal - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _bytes_left(stream, handle, compressed: bool) -> int:
    """How many bytes follow in `stream` (counted up to TRAILING_COUNT_LIMIT + 1 when compressed)."""
    if not compressed:
        return os.fstat(handle.fileno()).st_size - handle.tell()
    return len(_read_up_to(stream, TRAILING_COUNT_LIMIT + 1))


def read_idx_bytes(path, ndim: int | None = None) -> bytearray:
    """The header and data of an IDX file (a bytearray), decompressed when it starts with the gzip magic bytes.

    The header is read and checked first (see `parse_idx`), then exactly the data it declares: a small file
    whose stream inflates far beyond its header's claim costs only that claim. Data after the declared bytes is
    counted, not kept. Regular files only.
    Raises DataError when the file is missing, not a regular file, unreadable, a corrupt or truncated gzip
    stream, a bad header, or holds less or more data than its header declares.
    """
    path = Path(path)
    with _open_regular_file(path) as handle:
        compressed = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        stream = gzip.GzipFile(fileobj=handle, mode="rb") if compressed else handle
        try:
            data = _read_up_to(stream, 4)
            _check_magic(data, path, ndim)
            _read_up_to(stream, 4 * data[3], into=data)
            shape, declared = _check_header(data, path)
            file_size = os.fstat(handle.fileno()).st_size
            if compressed and declared > BOMB_THRESHOLD and declared > BOMB_RATIO * file_size:
                raise DataError(f"{path} declares {declared} bytes of data ({_shape_text(shape)}) in a gzip file of "
                                f"{file_size} bytes, far more than images compress to, so it was not read; "
                                f"{REDOWNLOAD}.")
            header_size = len(data)
            _read_up_to(stream, declared, into=data)
            _check_size(len(data) - header_size, declared, shape, path, _bytes_left(stream, handle, compressed))
        except EOFError:
            raise DataError(f"{path} is a truncated gzip file (the stream ends early); {REDOWNLOAD}.") from None
        except (gzip.BadGzipFile, zlib.error) as error:
            raise DataError(f"{path} is a corrupt gzip file ({error}); {REDOWNLOAD}.") from None
        except OSError as error:
            raise DataError(f"{path} cannot be read ({error.strerror or error}); {REDOWNLOAD}.") from None
    return data


def _describe_magic(data: bytes) -> str:
    head = data[:4]
    hint = ""
    if head.lstrip()[:1] == b"<":
        hint = " (it looks like an HTML page, perhaps an error page saved by a download)"
    return f"0x{head.hex()}{hint}"


def _shape_text(shape) -> str:
    return " x ".join(str(size) for size in shape)


def _check_magic(data: bytes, path, ndim: int | None) -> None:
    """The magic number (data[:4]): two zero bytes, the unsigned-byte type, `ndim` dimensions when given."""
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


def _check_header(data: bytes, path) -> tuple[tuple, int]:
    """(shape, declared data bytes) from a header whose magic passed `_check_magic`; DataError when cut short."""
    file_ndim = data[3]
    header_size = 4 + 4 * file_ndim
    if len(data) < header_size:
        raise DataError(
            f"{path} is truncated inside its header ({len(data)} of {header_size} bytes); {REDOWNLOAD}."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(file_ndim))
    declared = 1
    for size in shape:
        declared *= size
    return shape, declared


def _check_size(present: int, declared: int, shape, path, trailing: int = 0) -> None:
    """DataError when fewer bytes than declared are present, or any follow them."""
    if present < declared:
        raise DataError(
            f"{path} is truncated: its header declares {_shape_text(shape)} = {declared} bytes of data but only "
            f"{present} are present; {REDOWNLOAD}."
        )
    if trailing:
        extra = (f"more than {TRAILING_COUNT_LIMIT} unexpected bytes" if trailing > TRAILING_COUNT_LIMIT
                 else _count(trailing, "unexpected byte"))
        raise DataError(
            f"{path} has {extra} after the {declared} its header declares ({_shape_text(shape)}); {REDOWNLOAD}."
        )


def parse_idx(data: bytes, path, ndim: int | None = None) -> numpy.ndarray:
    """Decode the bytes of an unsigned-byte IDX file into a uint8 array of the declared shape.

    data: the (decompressed) file contents; path: used only in messages.
    ndim: the number of dimensions the caller needs (3 for images, 1 for labels), or None for any.
    Returns a writable uint8 array of shape dims.
    Raises DataError for a wrong magic number, a type other than unsigned byte, the wrong number of
    dimensions, and data shorter (truncated) or longer (trailing bytes) than the header declares.
    """
    _check_magic(data, path, ndim)
    shape, declared = _check_header(data, path)
    header_size = 4 + 4 * len(shape)
    present = len(data) - header_size
    _check_size(min(present, declared), declared, shape, path, max(present - declared, 0))
    return numpy.frombuffer(data, dtype=numpy.uint8, offset=header_size).reshape(shape).copy()


def read_idx(path, ndim: int | None = None) -> numpy.ndarray:
    """Read an unsigned-byte IDX file (raw or gzip) into a uint8 array of its declared shape."""
    return parse_idx(read_idx_bytes(path, ndim), path, ndim)


def read_images(path) -> numpy.ndarray:
    """Read an images file: -> (N, rows, cols) uint8."""
    return read_idx(path, ndim=3)


def check_labels(labels: numpy.ndarray, path, num_classes: int = 10) -> numpy.ndarray:
    """Return labels unchanged, or raise DataError naming the first label outside 0..num_classes-1."""
    bad = numpy.flatnonzero(labels >= num_classes)
    if bad.size:
        index = int(bad[0])
        raise DataError(
            f"{path} has label {int(labels[index])} at index {index} "
            f"({_count(bad.size, 'label')} out of range in all); "
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
