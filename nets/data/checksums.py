"""Checksums of dataset files: those of the published releases (CONTENT_MD5), and each file's own, computed once and
remembered by its size and modification time.

    digest = remembered_md5(path, blob)     # the MD5 of `blob` (the file's decompressed bytes)
    published_files(digests)                # {"fashion-mnist": [file names]}: which files are a published release's

A run used to MD5-hash every IDX file (about 55 MB for MNIST) before training started. The digest of a file
is now kept in a small JSON file in the user's cache folder, keyed by the file's absolute path, size and
modification time (nanoseconds), and recomputed only when one of them changes. The cache folder is
$NETS_CACHE_DIR, else $XDG_CACHE_HOME/nets, else ~/.cache/nets; never the dataset's own folder, which may be
read-only (/usr/share/datasets). A cache that cannot be read or written is ignored: the digest is then
computed every time, as before, and nothing fails. A cache that is not what this module writes (not a regular file,
over MAX_CACHE_BYTES, nested deeper than its entries are, or not JSON) is dropped and written anew; so are entries
of another shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from pathlib import Path

from nets.outputs import atomic_write

__all__ = ["CACHE_ENV", "CACHE_FILE", "CONTENT_MD5", "cache_dir", "published_files", "remembered_md5"]

# MD5 of the decompressed IDX files of the published releases. They identify the data whatever the
# compression: Debian's dataset-fashion-mnist recompressed the .gz files (so ARCHIVE_MD5 does not
# match them) but holds the very same bytes.
CONTENT_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def published_files(digests: dict) -> dict:
    """{dataset name: [file names]} of the files (digests: {file name: MD5 of its content}) that are the published
    release's file of that name; files of no release are left out."""
    releases = {}
    for file_name, digest in digests.items():
        known = next((name for name, published in CONTENT_MD5.items() if published.get(file_name) == digest), None)
        if known is not None:
            releases.setdefault(known, []).append(file_name)
    return releases


CACHE_ENV = "NETS_CACHE_DIR"
CACHE_FILE = "file-checksums.json"
MAX_ENTRIES = 256  # the most recently checked files; a handful of datasets need a few dozen
MAX_CACHE_BYTES = 1 << 20  # MAX_ENTRIES entries take about 60 KB
MAX_DEPTH = 2  # {path: {"size": ..., "mtime_ns": ..., "md5": ...}}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[][{}]")


def cache_dir() -> Path:
    """$NETS_CACHE_DIR, else $XDG_CACHE_HOME/nets, else ~/.cache/nets."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nets"


def _read_bounded(path: Path) -> str | None:
    """The text of the regular file `path` when it holds at most MAX_CACHE_BYTES, else None (never blocking on a
    FIFO, never reading more than the bound)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_CACHE_BYTES:
            return None
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_CACHE_BYTES + 1)
        return data.decode("utf-8") if len(data) <= MAX_CACHE_BYTES else None
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(descriptor)


def _depth(text: str) -> int:
    """How deep the JSON `text` nests its arrays and objects (brackets inside strings do not count)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _is_entry(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("md5"), str) and len(value["md5"]) == 32
            and all(isinstance(value.get(name), int) and not isinstance(value.get(name), bool)
                    for name in ("size", "mtime_ns")))


def _load(path: Path) -> dict:
    """The cache's entries, or {} when it is absent, unreadable or not what _store writes (then it is written anew)."""
    text = _read_bounded(path)
    if text is None or _depth(text) > MAX_DEPTH:
        return {}
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {key: entry for key, entry in entries.items() if _is_entry(entry)}


def _store(path: Path, entries: dict) -> None:
    """Write the cache atomically (nets.outputs.atomic_write: no signal leaves it half-written or its temporary file
    behind); any OSError leaves things as they were."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: file.write(json.dumps(entries, indent=1).encode("utf-8")))


def remembered_md5(path, blob: bytes) -> str:
    """The MD5 hex digest of `blob`, the decompressed content of the file `path`: remembered from an earlier
    call while the file keeps its size and modification time, else computed now and remembered."""
    path = Path(path).resolve()
    status = path.stat()
    key, signature = str(path), {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
    cache = cache_dir() / CACHE_FILE
    entries = _load(cache)
    entry = entries.get(key)
    if isinstance(entry, dict) and {name: entry.get(name) for name in signature} == signature and isinstance(
            entry.get("md5"), str):
        return entry["md5"]
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    entries.pop(key, None)
    entries[key] = {**signature, "md5": digest}  # newest last
    _store(cache, dict(list(entries.items())[-MAX_ENTRIES:]))
    return digest
