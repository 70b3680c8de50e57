"""Checksums of dataset files, computed once and remembered by each file's size and modification time.

    digest = remembered_md5(path, blob)     # the MD5 of `blob` (the file's decompressed bytes)

A run used to MD5-hash every IDX file (about 55 MB for MNIST) before training started. The digest of a file
is now kept in a small JSON file in the user's cache folder, keyed by the file's absolute path, size and
modification time (nanoseconds), and recomputed only when one of them changes. The cache folder is
$NETS_CACHE_DIR, else $XDG_CACHE_HOME/nets, else ~/.cache/nets; never the dataset's own folder, which may be
read-only (/usr/share/datasets). A cache that cannot be read or written is ignored: the digest is then
computed every time, as before, and nothing fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "CACHE_FILE", "cache_dir", "remembered_md5"]

CACHE_ENV = "NETS_CACHE_DIR"
CACHE_FILE = "file-checksums.json"
MAX_ENTRIES = 256  # the most recently checked files; a handful of datasets need a few dozen


def cache_dir() -> Path:
    """$NETS_CACHE_DIR, else $XDG_CACHE_HOME/nets, else ~/.cache/nets."""
    given = os.environ.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "nets"


def _load(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _store(path: Path, entries: dict) -> None:
    """Write the cache atomically (a temporary file renamed over it); any OSError leaves things as they were."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(entries, indent=1), encoding="utf-8")
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


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
