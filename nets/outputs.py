"""Output paths (checkpoints, metrics JSON, plot folders): checked before the work starts, and written
atomically, so that a run never trains for an epoch (or an hour) only to fail at its first save.

    prepare_file("runs/cnn.npz", "--save")     # creates runs/, checks a file can be written there
    prepare_folder("runs/plots", "--plot")      # creates the folder, checks it is writable
    check_file_creatable("checkpoints/x.npz", "the Ctrl-C checkpoint")   # checks only; creates nothing
    check_folder_creatable("runs/plots", "--plot")                      # the same for a folder
    write_json("runs/eval.json", report)        # atomic, folders created, OutputError naming the path
    write_new("runs/cnn-2.npz", write_at)       # a new file only, never over one: False when the name is taken
    refuse_overlap("x.npz", "--json", {"the checkpoint being scored": "./x.npz"})   # one file, two roles

Every problem raises OutputError, one line naming the user's path (never a temporary file) and what to do.
An output is a regular file or a new path: a device (/dev/null), a FIFO or a socket there is refused, never
replaced by a plain file; a symbolic link is written through (the file it points to is replaced, the link stays).
While a file is written, Ctrl-C, SIGTERM and SIGHUP wait until it is whole (or, on a failure, until its temporary
file is removed): no signal leaves a half-written file or a temporary one behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import tempfile
import threading
from pathlib import Path

from nets.errors import NetsError

__all__ = ["OutputError", "atomic_write", "check_file_creatable", "check_folder_creatable", "prepare_file",
           "json_bytes", "prepare_folder", "refuse_overlap", "same_file", "write_json", "write_new"]

HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class OutputError(NetsError, OSError):
    """An output path cannot be written; the one-line message names the user's path and what to do."""


def _label(path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists (the current directory at worst)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe(folder: Path, label: str, advice: str = "choose another path") -> None:
    """Create and remove a temporary file in `folder`: the one test of writability that holds for root,
    read-only mounts and ACLs alike."""
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".nets-write-test.", dir=folder)
    except OSError as error:
        raise OutputError(f"{label}: cannot write in {folder} ({_reason(error)}); {advice}.") from error
    os.close(descriptor)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _check_folder_path(folder: Path, label: str, advice: str = "choose another path") -> Path:
    """The nearest existing part of `folder` must be a folder (not a file in the way); -> that part."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise OutputError(f"{label}: {existing} is a file, not a folder, so nothing can be written under it; "
                          f"{advice}.")
    return existing


def _check_name_length(path: Path, label: str) -> None:
    """A name longer than the file system takes (ENAMETOOLONG: a part over 255 bytes, or the whole over
    PATH_MAX) is refused now, not met at the first save."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            raise OutputError(f"{label}: the name is too long for the file system (ENAMETOOLONG); choose a shorter "
                              "one (most file systems take at most 255 bytes per folder or file name).") from None


_SPECIAL_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _refuse_special(path: Path, label: str) -> None:
    """OutputError when `path` (its link followed) exists and is neither a folder nor a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # a new path (or a dangling link, written through)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
    raise OutputError(f"{label}: {path} is {kind}, not a regular file, and writing there would replace it; "
                      "give the path of a regular file or a new one.")


def check_file_creatable(path, option: str | None = None, advice: str = "choose another path") -> None:
    """Check that a file can be written at `path` (its folders created) without creating anything: a new path or
    a regular file. `advice` ends the message of a failure."""
    path = Path(path)
    label = _label(path, option)
    _check_name_length(path, label)
    if path.is_dir():
        raise OutputError(f"{label}: {path} is a folder; give a file path inside it, such as {path / 'run.npz'}.")
    _refuse_special(path, label)
    _probe(_check_folder_path(path.parent, label, advice), label, advice)


def same_file(first, second) -> bool:
    """Whether two paths name one file (./x.npz and x.npz, a symbolic or hard link), existing or not."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(first) == os.path.realpath(second)


def refuse_overlap(path, option: str, others: dict) -> None:
    """OutputError when the output `path` of `option` is one of `others` ({what it is: path}, None skipped), which
    writing there would replace."""
    for what, other in others.items():
        if other is not None and same_file(path, other):
            raise OutputError(f"{option} {path} is {what}, and writing there would replace it; give {option} another "
                              "path.")


def check_folder_creatable(path, option: str | None = None) -> None:
    """Check that files can be written in the folder `path` (created as needed) without creating anything."""
    path = Path(path)
    label = _label(path, option)
    _check_name_length(path, label)
    _probe(_check_folder_path(path, label), label)


def prepare_file(path, option: str | None = None) -> Path:
    """Create the folders above `path` and check a file can be written there; -> `path`."""
    path = Path(path)
    label = _label(path, option)
    check_file_creatable(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{label}: cannot create the folder {path.parent} ({_reason(error)}); "
                          "choose another path.") from error
    _probe(path.parent, label)
    return path


def prepare_folder(path, option: str | None = None) -> Path:
    """Create the folder `path` (and its parents) and check files can be written in it; -> `path`."""
    path = Path(path)
    label = _label(path, option)
    _check_folder_path(path, label)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{label}: cannot create the folder {path} ({_reason(error)}); "
                          "choose another path.") from error
    _probe(path, label)
    return path


@contextlib.contextmanager
def signals_held():
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done, then come as if they had just arrived (to the
    handlers there were before): a file is written whole, and its temporary file removed, whatever arrives
    meanwhile. Python runs signal handlers in the main thread only, so in another thread nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived, previous = [], {}
    try:
        for signum in HELD_SIGNALS:
            previous[signum] = signal.signal(signum, lambda signum, frame: arrived.append(signum))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def _temporary_beside(path: str) -> str:
    """A new empty temporary file in `path`'s folder, named after it (at most 100 characters of its name, so that a
    name near the limit still fits): .NAME.XXXXXXXX.tmp."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)[:100]}.", suffix=".tmp", dir=directory)
    os.close(descriptor)
    return temporary


def _cannot_write(given, error: OSError) -> OutputError:
    return OutputError(f"cannot write {given} ({_reason(error)}); check that its folder exists, is writable and has "
                       "space, or choose another path.")


def _sync_folder(path: str) -> None:
    """Make a rename or link in `path`'s folder durable (not possible on every platform)."""
    with contextlib.suppress(OSError):
        directory_descriptor = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)


def atomic_write(path, write) -> None:
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it over `path`.

    A failure at any point leaves whatever was at `path` untouched and removes the temporary file; a signal waits
    until the file is written (signals_held). An OSError on the way becomes OutputError naming `path` (never the
    temporary file). A symbolic link at `path` is written through; anything there that is not a regular file (a
    device, a FIFO) is refused before anything is written.
    """
    given = path
    _refuse_special(Path(path), str(path))
    path = os.path.realpath(path)  # through a link: replace the file it points to, keep the link
    temporary = None
    with signals_held():
        try:
            temporary = _temporary_beside(path)
            with open(temporary, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it 0600; a checkpoint is an ordinary file
            os.replace(temporary, path)
        except BaseException as error:
            if temporary is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            if isinstance(error, OSError) and not isinstance(error, NetsError):
                raise _cannot_write(given, error) from error
            raise
        _sync_folder(path)


def _link_new(temporary: str, path: str) -> bool:
    """Give the whole file `temporary` the name `path` too, only if nothing has that name: -> False if something
    has. A hard link where the file system makes them, else an exclusive creation that the file is renamed over."""
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    try:  # no hard links here (FAT, some network file systems): claim the name empty, then fill it at once
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return False
    os.replace(temporary, path)
    return True


def write_new(path, write_at) -> bool:
    """Write a new file at `path`, never replacing one: write_at(temporary path) writes the whole file beside it,
    which then takes the name `path` only if nothing has it, in one step (of several processes creating one name,
    exactly one gets it); -> whether it did (False: something is there, and nothing was written).

    The temporary file is removed on every path, and signals wait until it is (signals_held). An OSError becomes
    OutputError naming `path`."""
    path = os.fspath(path)
    with signals_held():
        if os.path.lexists(path):
            return False
        temporary = None
        try:
            temporary = _temporary_beside(path)
            write_at(temporary)
            created = _link_new(temporary, path)
        except OSError as error:
            if isinstance(error, NetsError):
                raise
            raise _cannot_write(path, error) from error
        finally:
            if temporary is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
        if created:
            _sync_folder(path)
        return created


def json_bytes(payload) -> bytes:
    """`payload` as the indented JSON write_json writes."""
    return (json.dumps(payload, indent=2) + "\n").encode()


def write_json(path, payload, option: str | None = None) -> Path:
    """Write `payload` as indented JSON at `path`, atomically, creating its folders; -> `path`."""
    path = prepare_file(path, option)
    atomic_write(path, lambda file: file.write(json_bytes(payload)))
    return path
