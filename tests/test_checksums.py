"""Dataset checksums computed once, remembered by size and modification time in the user's cache folder."""

import contextlib
import hashlib
import json
import os
import stat
import threading

import pytest

from nets.data import checksums, datasets
from idx_files import write_dataset

BLOB = b"the decompressed bytes of an IDX file"
DIGEST = hashlib.md5(BLOB).hexdigest()
OTHER = hashlib.md5(b"other bytes").hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(checksums.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def counted(monkeypatch):
    """Counts MD5 computations (hashlib's own md5 is patched: compute expected digests before using this)."""
    calls = []
    real = hashlib.md5

    def md5(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(checksums.hashlib, "md5", md5)
    return calls


def test_a_digest_is_computed_once_and_remembered_by_size_and_mtime(tmp_path, cache, counted):
    data = tmp_path / "train-images-idx3-ubyte.gz"
    data.write_bytes(b"compressed")
    assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert len(counted) == 1
    entry = json.loads((cache / checksums.CACHE_FILE).read_text())[str(data.resolve())]
    assert entry == {"size": 10, "mtime_ns": data.stat().st_mtime_ns, "md5": DIGEST}

    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched: hashed again
    assert checksums.remembered_md5(data, b"other bytes") == OTHER
    data.write_bytes(b"compressed!")  # rewritten: hashed again
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert len(counted) == 3


def test_the_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(checksums.CACHE_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checksums.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(checksums.CACHE_ENV)
    assert checksums.cache_dir() == tmp_path / "xdg" / "nets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert checksums.cache_dir() == tmp_path / "home" / ".cache" / "nets"


@pytest.mark.parametrize("damage", ["a file in the way", "garbage in the cache"])
def test_a_cache_that_cannot_be_used_costs_only_the_hashing(tmp_path, cache, counted, damage):
    data = tmp_path / "labels"
    data.write_bytes(b"x")
    if damage == "a file in the way":
        cache.write_text("not a folder")
    else:
        cache.mkdir()
        (cache / checksums.CACHE_FILE).write_text("{not json")
    assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert len(counted) == (2 if damage == "a file in the way" else 1)  # rewritten once readable again


def test_a_dataset_is_hashed_on_its_first_load_only(tmp_path, cache, counted, monkeypatch):
    directory = write_dataset(tmp_path / "fashion-mnist", n_train=20, n_test=10, gzip=True)
    published = {name: hashlib.md5(datasets.read_idx_bytes(path, ndim=3 if "images" in name else 1)).hexdigest()
                 for name, path in datasets.dataset_files(directory)[0].items()}
    counted.clear()
    monkeypatch.setitem(datasets.CONTENT_MD5, "fashion-mnist", published)
    first = datasets.load_dataset("fashion-mnist", directory, download=False)
    assert first.verified and len(counted) == 4
    second = datasets.load_dataset("fashion-mnist", directory, download=False)
    assert second.verified and len(counted) == 4  # remembered: no file hashed again
    monkeypatch.setitem(datasets.CONTENT_MD5, "fashion-mnist", {**published, "t10k-labels-idx1-ubyte": "0" * 32})
    assert not datasets.load_dataset("fashion-mnist", directory, download=False).verified


@contextlib.contextmanager
def unblocking_a_fifo_reader(path, patience: float = 20.0):
    """Within the block, a reader left waiting on the FIFO `path` for `patience` seconds is let go (a writer opens and
    closes it), so that a test of code that must not wait fails instead of hanging; -> a list, non-empty when that
    happened."""
    unblocked, finished = [], threading.Event()

    def watch():
        if finished.wait(patience) or not stat.S_ISFIFO(os.lstat(path).st_mode):
            return
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            unblocked.append(True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield unblocked
    finally:
        finished.set()
        watcher.join()


@pytest.mark.parametrize("damage", ["nested 200,000 deep", "over the size bound", "entries of another shape",
                                    "a list", "a FIFO"])
def test_a_malformed_cache_is_dropped_and_written_anew(tmp_path, cache, counted, damage):
    """Never a RecursionError, a read of a huge file or a wait on a FIFO: the cache is read within a depth and size
    bound, and one that is not what this module writes is dropped (the digest computed, the cache written anew)."""
    data = tmp_path / "labels"
    data.write_bytes(b"x")
    cache.mkdir()
    path = cache / checksums.CACHE_FILE
    if damage == "nested 200,000 deep":
        path.write_text('{"a": ' + "[" * 200_000 + "]" * 200_000 + "}")
    elif damage == "over the size bound":
        path.write_text(json.dumps({"padding": "x" * checksums.MAX_CACHE_BYTES}))
    elif damage == "entries of another shape":
        path.write_text(json.dumps({str(data.resolve()): {"size": "1", "mtime_ns": [], "md5": DIGEST}, "other": 3}))
    elif damage == "a list":
        path.write_text("[1, 2, 3]")
    else:
        os.mkfifo(path)
    with unblocking_a_fifo_reader(path) as unblocked:
        assert checksums.remembered_md5(data, BLOB) == DIGEST
    assert not unblocked, "the cache was opened as a FIFO's reader and waited for a writer"
    assert len(counted) == 1
    if damage != "a FIFO":  # replaced by a valid cache that remembers the digest
        entries = json.loads(path.read_text())
        assert list(entries) == [str(data.resolve())] and entries[str(data.resolve())]["md5"] == DIGEST
        assert checksums.remembered_md5(data, BLOB) == DIGEST and len(counted) == 1


def test_files_of_two_published_datasets_in_one_folder_are_refused_naming_them(tmp_path, cache, monkeypatch):
    """Fashion-MNIST's training files beside MNIST's test files (each file told by the published checksums, here
    made to match two tiny datasets) are one line naming which file is whose, not a dataset of neither."""
    clothes = write_dataset(tmp_path / "clothes", n_train=20, n_test=10, seed=1)
    digits = write_dataset(tmp_path / "digits", n_train=20, n_test=10, seed=2)
    for name, directory in (("fashion-mnist", clothes), ("mnist", digits)):
        monkeypatch.setitem(datasets.CONTENT_MD5, name, {
            file_name: hashlib.md5(datasets.read_idx_bytes(path, ndim=3 if "images" in file_name else 1)).hexdigest()
            for file_name, path in datasets.dataset_files(directory)[0].items()})
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for source, prefix in ((clothes, "train"), (digits, "t10k")):
        for path in source.glob(f"{prefix}-*"):
            (mixed / path.name).write_bytes(path.read_bytes())
    with pytest.raises(datasets.DataError) as refused:
        datasets.load_dataset("mnist", mixed, download=False)
    assert str(refused.value) == (
        f"{mixed} mixes the files of two datasets (train-images-idx3-ubyte, train-labels-idx1-ubyte are "
        "Fashion-MNIST's; t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte are MNIST's, by their published checksums); "
        "put each dataset's four files in a folder of its own.")
    assert datasets.load_dataset("mnist", digits, download=False).checksums == datasets.CONTENT_MD5["mnist"]
