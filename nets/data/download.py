"""Downloading the gzip IDX files of a dataset from public mirrors, verified by MD5.

    download_dataset("mnist", Path("data/mnist"))   # -> data/mnist/train-images-idx3-ubyte.gz, ...

Each file is streamed into a hidden temporary file in the target directory and renamed to its
final name only once its MD5 matches the published one, so an interrupted or corrupt download
(an exception, Ctrl-C, a bad mirror) never leaves a partial file under the real name.
Mirrors are tried in order; a failure of any kind (HTTP 404, no network, a timeout, a checksum
mismatch) moves on to the next. Progress bars appear only when stderr is a terminal.

Tests override `MIRRORS` / `ARCHIVE_MD5` (monkeypatch) or pass `mirrors=` / `checksums=`;
users can set NETS_MIRROR to one or more base URLs (separated by spaces or commas).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from nets.data.idx import DataError

__all__ = [
    "ARCHIVE_MD5",
    "DownloadError",
    "MIRROR_ENV",
    "MIRRORS",
    "TIMEOUT_S",
    "download_dataset",
    "download_file",
    "file_md5",
    "mirrors_for",
]

MIRROR_ENV = "NETS_MIRROR"
TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20

# Base URLs, tried in order; a file's URL is the base followed by its name.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# MD5 of the published .gz files (torchvision's table); a download must match these exactly.
ARCHIVE_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


class DownloadError(DataError):
    """No mirror delivered a file with the right checksum; the message lists what each mirror did."""


def mirrors_for(name: str, mirrors=None) -> list[str]:
    """The base URLs to try for dataset `name`: `mirrors` if given, else $NETS_MIRROR, else MIRRORS[name].

    Each base URL ends with "/" (added when missing).
    """
    if mirrors is None:
        from_env = os.environ.get(MIRROR_ENV, "").replace(",", " ").split()
        mirrors = from_env or MIRRORS.get(name, ())
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    return [base if base.endswith("/") else base + "/" for base in mirrors]


def file_md5(path) -> str:
    """The hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total, description):
    """A tqdm bar on a terminal, else None (downloads are silent when stderr is not a terminal)."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _fetch(url: str, destination: Path, timeout: float) -> str:
    """Stream `url` into the open-for-writing path `destination`; -> hex MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, url.rsplit("/", 1)[-1])
        received = 0
        try:
            with open(destination, "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    """A short description of why one mirror failed."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "the connection closed before the whole file arrived"
    return str(error) or type(error).__name__


def download_file(filename: str, md5: str, target_dir, mirrors, *, timeout: float | None = None) -> Path:
    """Download `filename` from the first mirror that delivers it with the given MD5.

    filename: the name under each base URL and in target_dir; md5: its expected hex MD5.
    Returns target_dir / filename. Nothing but that file is left in target_dir, whatever happens.
    Raises DownloadError listing each mirror's failure when none succeeds.
    """
    target_dir = Path(target_dir)
    timeout = TIMEOUT_S if timeout is None else timeout
    final = target_dir / filename
    failures = []
    for base in mirrors:
        url = base + filename
        try:
            handle, temporary = tempfile.mkstemp(dir=target_dir, prefix=f".{filename}.", suffix=".part")
        except OSError as error:
            reason = error.strerror or error
            raise DownloadError(f"cannot write into {target_dir} ({reason}); check its permissions.") from None
        os.close(handle)
        temporary = Path(temporary)
        try:
            got = _fetch(url, temporary, timeout)
            if got != md5.lower():
                failures.append(f"{url}: checksum mismatch (MD5 {got}, expected {md5})")
                continue
            os.replace(temporary, final)
            return final
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            failures.append(f"{url}: {_reason(error)}")
        finally:
            temporary.unlink(missing_ok=True)
    if not failures:
        raise DownloadError(f"no mirror to download {filename} from; set {MIRROR_ENV} to a base URL.")
    raise DownloadError(f"could not download {filename}: " + "; ".join(failures))


def download_dataset(name: str, target_dir, *, mirrors=None, checksums=None, timeout: float | None = None) -> Path:
    """Download the four gzip IDX files of dataset `name` into target_dir (created if needed).

    mirrors: base URLs to try (default: see `mirrors_for`); checksums: {file name: MD5}
    (default ARCHIVE_MD5[name]). Files already present with the right MD5 are kept.
    Returns target_dir. Raises DownloadError when a file cannot be fetched or the directory cannot be made.
    """
    target_dir = Path(target_dir)
    checksums = ARCHIVE_MD5[name] if checksums is None else checksums
    bases = mirrors_for(name, mirrors)
    created = [parent for parent in (target_dir, *target_dir.parents) if not parent.exists()]
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create {target_dir} to download into ({error.strerror or error}).") from None
    try:
        for filename, md5 in checksums.items():
            existing = target_dir / filename
            if existing.is_file() and file_md5(existing) == md5.lower():
                continue
            download_file(filename, md5, target_dir, bases, timeout=timeout)
    except BaseException:
        _remove_empty(created)  # a failed first download leaves no empty ./data/<name> behind
        raise
    return target_dir


def _remove_empty(directories) -> None:
    """Remove the given directories, deepest first, where they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return
