"""Dataset checksums computed once, remembered by size and modification time in the user's cache folder."""

import hashlib
import json
import os

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
