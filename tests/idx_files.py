"""Test helpers that write small IDX files and datasets, and serve a directory over local HTTP.

    from idx_files import write_dataset, write_idx, serve_directory

    write_dataset(tmp_path / "mnist", n_train=200, n_test=50, gzip=True, seed=0)  # the four standard files
    write_idx(tmp_path / "x-idx3-ubyte", images)                # any uint8 (or other IDX-typed) array
    write_bytes(tmp_path / "bad.gz", idx_bytes(images)[:-3], gzip=True)   # malformed files, raw or gzip
    with serve_directory(tmp_path / "mirror") as base_url:      # "http://127.0.0.1:PORT/", shut down after
        ...

The tiny dataset is learnable: class k puts a bright square in cell k of a 2 x 5 grid (jittered, on a
noisy background), so even a few epochs of a small MLP or CNN separate the classes well.
"""

from __future__ import annotations

import contextlib
import functools
import gzip as gzip_module
import http.server
import threading
from pathlib import Path

import numpy

__all__ = ["idx_bytes", "make_dataset", "serve_directory", "write_bytes", "write_dataset", "write_idx"]

TYPE_CODES = {
    numpy.dtype(numpy.uint8): 0x08,
    numpy.dtype(numpy.int8): 0x09,
    numpy.dtype(">i2"): 0x0B,
    numpy.dtype(">i4"): 0x0C,
    numpy.dtype(">f4"): 0x0D,
    numpy.dtype(">f8"): 0x0E,
}


def idx_bytes(array, type_code: int | None = None) -> bytes:
    """The bytes of an IDX file holding `array` (header, then the data big-endian, row-major).

    type_code: the header's data-type byte; by default the one matching array's dtype
    (uint8 -> 0x08, int8, int16, int32, float32, float64). Pass another to write a deliberately wrong header.
    """
    array = numpy.asarray(array)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if type_code is None:
        if big_endian not in TYPE_CODES:
            raise ValueError(f"IDX has no type for {array.dtype}; use uint8, int8, int16, int32, float32 or float64.")
        type_code = TYPE_CODES[big_endian]
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + numpy.ascontiguousarray(array, dtype=big_endian).tobytes()


def write_bytes(path, data: bytes, gzip: bool = False) -> Path:
    """Write `data` to `path` (gzip-compressed when gzip=True, whatever the name); -> path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip_module.compress(data, mtime=0) if gzip else data)
    return path


def write_idx(path, array, gzip: bool = False) -> Path:
    """Write `array` as an IDX file at `path` (gzip-compressed when gzip=True); -> path."""
    return write_bytes(path, idx_bytes(array), gzip=gzip)


def _images_for(labels, rng, rows: int, cols: int) -> numpy.ndarray:
    """(N, rows, cols) uint8: noise below 40, and for label k a bright square in cell k of a 2 x 5 grid."""
    images = rng.integers(0, 40, size=(len(labels), rows, cols), dtype=numpy.uint8)
    cell_rows, cell_cols = rows // 2, cols // 5
    side = max(1, min(cell_rows, cell_cols) - 2)
    for image, label in zip(images, labels):
        top = (label // 5) * cell_rows + rng.integers(0, cell_rows - side + 1)
        left = (label % 5) * cell_cols + rng.integers(0, cell_cols - side + 1)
        image[top : top + side, left : left + side] = rng.integers(180, 256, size=(side, side), dtype=numpy.uint8)
    return images


def make_dataset(n_train: int = 200, n_test: int = 50, seed: int = 0, rows: int = 28, cols: int = 28) -> dict:
    """The arrays of a tiny learnable dataset, keyed by the standard file names.

    -> {"train-images-idx3-ubyte": (n_train, rows, cols) uint8, "train-labels-idx1-ubyte": (n_train,) uint8,
        "t10k-images-idx3-ubyte": (n_test, rows, cols) uint8, "t10k-labels-idx1-ubyte": (n_test,) uint8}.
    Labels cycle through 0..9 (balanced) in a shuffled order; the same seed gives the same arrays.
    """
    if rows < 2 or cols < 5:
        raise ValueError(f"images must be at least 2 x 5 pixels, got {rows} x {cols}.")
    rng = numpy.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(numpy.arange(count) % 10).astype(numpy.uint8)
        arrays[f"{split}-images-idx3-ubyte"] = _images_for(labels, rng, rows, cols)
        arrays[f"{split}-labels-idx1-ubyte"] = labels
    return arrays


def write_dataset(
    directory, n_train: int = 200, n_test: int = 50, gzip: bool = False, seed: int = 0, rows: int = 28, cols: int = 28
) -> Path:
    """Write the four standard files of `make_dataset(...)` into `directory` (created); -> directory.

    gzip=True writes NAME.gz files, gzip-compressed; else raw NAME files.
    """
    directory = Path(directory)
    for file_name, array in make_dataset(n_train, n_test, seed, rows, cols).items():
        write_idx(directory / (f"{file_name}.gz" if gzip else file_name), array, gzip=gzip)
    return directory


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory):
    """Serve `directory` over HTTP on 127.0.0.1 at an ephemeral port, in a thread; yields the base URL.

    Missing files answer 404. The server is shut down when the block exits.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
