"""The IDX reader: good files round-trip, raw or gzip; every kind of bad file is a one-line DataError."""

import contextlib
import gzip
import os
import threading

import numpy
import pytest

from nets.data.idx import DataError, read_idx, read_images, read_labels, read_pair
from crafted_files import MEMORY_BOUND, gzip_of, peak_of
from idx_files import idx_bytes, write_bytes, write_idx

COMPRESSION = pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])


@pytest.fixture
def images():
    return numpy.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=numpy.uint8)


@pytest.fixture
def labels():
    return numpy.array([0, 9, 3, 3, 7], dtype=numpy.uint8)


@contextlib.contextmanager
def expect_error(path, *fragments):
    """Expect a DataError whose message is one line naming `path` and containing each fragment."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- good files ------------------------------------------------------------------------------


@COMPRESSION
def test_images_and_labels_round_trip(tmp_path, images, labels, compressed):
    images_path = write_idx(tmp_path / "images", images, gzip=compressed)
    labels_path = write_idx(tmp_path / "labels", labels, gzip=compressed)
    got_images, got_labels = read_pair(images_path, labels_path)
    assert got_images.dtype == numpy.uint8 and got_images.shape == (5, 4, 3)
    assert got_labels.dtype == numpy.uint8 and got_labels.shape == (5,)
    numpy.testing.assert_array_equal(got_images, images)
    numpy.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # the arrays are the caller's to modify


def test_gzip_is_detected_by_content_not_name(tmp_path, images):
    gzipped_without_suffix = write_idx(tmp_path / "images-idx3-ubyte", images, gzip=True)
    raw_with_gz_suffix = write_idx(tmp_path / "images-idx3-ubyte.gz", images, gzip=False)
    numpy.testing.assert_array_equal(read_images(gzipped_without_suffix), images)
    numpy.testing.assert_array_equal(read_images(raw_with_gz_suffix), images)


def test_multi_member_gzip_is_read_whole(tmp_path, images):
    data = idx_bytes(images)
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(data[:10]) + gzip.compress(data[10:]))
    numpy.testing.assert_array_equal(read_images(path), images)


def test_empty_dataset_is_allowed(tmp_path):
    path = write_idx(tmp_path / "images", numpy.zeros((0, 28, 28), dtype=numpy.uint8))
    assert read_images(path).shape == (0, 28, 28)


# --- bad files, each raw and gzip ------------------------------------------------------------


@COMPRESSION
def test_truncated_images(tmp_path, images, compressed):
    path = write_bytes(tmp_path / "train-images", idx_bytes(images)[:-7], gzip=compressed)
    with expect_error(path, "truncated", "5 x 4 x 3 = 60 bytes", "only 53", "re-download"):
        read_images(path)


@COMPRESSION
def test_truncated_labels(tmp_path, labels, compressed):
    path = write_bytes(tmp_path / "train-labels", idx_bytes(labels)[:-1], gzip=compressed)
    with expect_error(path, "truncated", "only 4", "re-download"):
        read_labels(path)


@COMPRESSION
def test_truncated_header(tmp_path, images, compressed):
    path = write_bytes(tmp_path / "train-images", idx_bytes(images)[:9], gzip=compressed)
    with expect_error(path, "truncated inside its header", "9 of 16 bytes"):
        read_images(path)


@COMPRESSION
@pytest.mark.parametrize("size", [0, 3])
def test_too_short_for_a_magic_number(tmp_path, compressed, size):
    path = write_bytes(tmp_path / "labels", b"\x00" * size, gzip=compressed)
    with expect_error(path, "too short", f"({size} bytes)"):
        read_labels(path)


@COMPRESSION
@pytest.mark.parametrize("which", ["images", "labels"])
def test_oversized_file_with_trailing_bytes(tmp_path, images, labels, compressed, which):
    array = images if which == "images" else labels
    path = write_bytes(tmp_path / which, idx_bytes(array) + b"\x00" * 16, gzip=compressed)
    with expect_error(path, "16 unexpected bytes", "re-download"):
        read_images(path) if which == "images" else read_labels(path)


@COMPRESSION
def test_wrong_magic(tmp_path, images, compressed):
    data = b"\x01\x02" + idx_bytes(images)[2:]
    path = write_bytes(tmp_path / "images", data, gzip=compressed)
    with expect_error(path, "not an IDX file", "0x0102", "two zero bytes"):
        read_images(path)


@COMPRESSION
def test_html_page_instead_of_idx(tmp_path, compressed):
    path = write_bytes(tmp_path / "images", b"<html><body>404 Not Found</body></html>", gzip=compressed)
    with expect_error(path, "not an IDX file", "HTML page"):
        read_images(path)


@COMPRESSION
def test_wrong_data_type(tmp_path, compressed):
    path = write_idx(tmp_path / "images", numpy.zeros((2, 3, 3), dtype=numpy.float32), gzip=compressed)
    with expect_error(path, "data type 0x0d", "float32", "magic number 0x00000d03", "only 0x08 (unsigned byte"):
        read_images(path)


@COMPRESSION
def test_wrong_data_type_code_with_byte_data(tmp_path, labels, compressed):
    path = write_bytes(tmp_path / "labels", idx_bytes(labels, type_code=0x09), gzip=compressed)
    with expect_error(path, "0x09", "signed byte"):
        read_labels(path)


@COMPRESSION
def test_images_with_wrong_number_of_dimensions(tmp_path, compressed):
    path = write_idx(tmp_path / "images", numpy.zeros((4, 784), dtype=numpy.uint8), gzip=compressed)
    with expect_error(path, "2 dimensions", "an images file has 3"):
        read_images(path)


@COMPRESSION
def test_swapped_images_and_labels(tmp_path, images, labels, compressed):
    images_path = write_idx(tmp_path / "images", images, gzip=compressed)
    labels_path = write_idx(tmp_path / "labels", labels, gzip=compressed)
    with expect_error(labels_path, "1 dimension in", "an images file has 3", "swapped"):
        read_images(labels_path)
    with expect_error(images_path, "3 dimensions", "a labels file has 1", "swapped"):
        read_labels(images_path)


@COMPRESSION
def test_image_and_label_counts_disagree(tmp_path, images, labels, compressed):
    images_path = write_idx(tmp_path / "images", images, gzip=compressed)
    labels_path = write_idx(tmp_path / "labels", labels[:4], gzip=compressed)
    with expect_error(images_path, "5 images", str(labels_path), "4 labels", "same release"):
        read_pair(images_path, labels_path)


@COMPRESSION
def test_labels_out_of_range(tmp_path, labels, compressed):
    bad = labels.copy()
    bad[2], bad[4] = 10, 255
    path = write_idx(tmp_path / "labels", bad, gzip=compressed)
    with expect_error(path, "label 10 at index 2", "2 labels out of range", "0..9"):
        read_labels(path)


def test_label_range_follows_num_classes(tmp_path, labels):
    path = write_idx(tmp_path / "labels", labels)
    with expect_error(path, "label 9 at index 1", "0..4"):
        read_labels(path, num_classes=5)


def test_truncated_gzip_stream(tmp_path, images):
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "images.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with expect_error(path, "truncated gzip file", "re-download"):
        read_images(path)


def test_gzip_with_damaged_data(tmp_path, images):
    compressed = bytearray(gzip.compress(idx_bytes(images)))
    compressed[-8] ^= 0xFF  # the CRC32 of the contents no longer matches
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(compressed))
    with expect_error(path, "corrupt gzip file", "re-download"):
        read_images(path)


def test_gzip_with_garbled_deflate_stream(tmp_path):
    noise = numpy.random.default_rng(1).integers(0, 256, size=200, dtype=numpy.uint8).tobytes()
    path = tmp_path / "images"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + noise)
    with expect_error(path, "gzip file", "re-download"):
        read_images(path)


def test_gzip_with_trailing_garbage(tmp_path, images):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)) + b"garbage")
    with expect_error(path, "corrupt gzip file"):
        read_images(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "train-images-idx3-ubyte"
    with expect_error(path, "no such file"):
        read_images(path)


def test_directory_instead_of_file(tmp_path):
    with expect_error(tmp_path, "is a directory"):
        read_images(tmp_path)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# --- small files, big streams ------------------------------------------------------------------


def test_a_small_gzip_inflating_to_400_mib_costs_only_its_header_claim(tmp_path):
    """A header declaring 10 images, followed by 400 MiB of zeros: a file of about 400 KiB."""
    declared = idx_bytes(numpy.zeros((10, 28, 28), dtype=numpy.uint8))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of(declared, zeros=400 * 2**20))
    assert path.stat().st_size < 512 * 2**10

    def read():
        with expect_error(path, "more than 1048576 unexpected bytes after the 7840 its header declares"):
            read_images(path)

    assert peak_of(read) < MEMORY_BOUND


def test_a_small_gzip_declaring_400_mib_is_refused_unread(tmp_path):
    """The header itself claims 524288 images (411 MB) and the stream holds them, as zeros, in about 400 KiB."""
    header = idx_bytes(numpy.zeros((0, 28, 28), dtype=numpy.uint8))
    header = header[:4] + (2**19).to_bytes(4, "big") + header[8:]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_of(header, zeros=2**19 * 784))

    def read():
        with expect_error(path, "declares 411041792 bytes of data (524288 x 28 x 28) in a gzip file of",
                          "far more than images compress to, so it was not read"):
            read_images(path)

    assert peak_of(read) < MEMORY_BOUND


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    # Should the reader open the FIFO anyway, this writer lets it go on (to an empty read) instead of hanging.
    writer = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
    writer.start()
    try:
        with expect_error(fifo, "is not a regular file (a FIFO, device or socket)"):
            read_images(fifo)
    finally:
        if writer.is_alive():  # release the writer: hold the read end open until its open() returns
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(timeout=60)
            os.close(reader)
    assert not writer.is_alive()
