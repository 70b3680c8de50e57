"""Output paths: checked before work starts (creating nothing), created when asked, written atomically, and every
failure one line naming the user's path, never a temporary file."""

import json
import os
import stat
from pathlib import Path

import pytest

from nets import outputs
from nets.outputs import (OutputError, atomic_write, check_file_creatable, check_folder_creatable, prepare_file,
                          prepare_folder, refuse_overlap, same_file, write_json)


def test_check_creates_nothing_and_prepare_creates_the_folders(tmp_path):
    target = tmp_path / "runs" / "deep" / "cnn.npz"
    check_file_creatable(target, "--save")
    check_folder_creatable(tmp_path / "plots" / "a", "--plot")
    assert os.listdir(tmp_path) == []
    assert prepare_file(target, "--save") == target
    assert target.parent.is_dir() and os.listdir(target.parent) == []  # the write test left nothing behind
    assert prepare_folder(tmp_path / "plots" / "a", "--plot").is_dir()


def test_a_file_in_the_way_or_a_folder_as_target(tmp_path):
    (tmp_path / "runs").write_text("x")
    with pytest.raises(OutputError) as info:
        prepare_file(tmp_path / "runs" / "sub" / "cnn.npz", "--save")
    assert str(info.value) == (f"--save {tmp_path / 'runs' / 'sub' / 'cnn.npz'}: {tmp_path / 'runs'} is a file, not a "
                               "folder, so nothing can be written under it; choose another path.")
    with pytest.raises(OutputError, match="is a folder; give a file path inside it"):
        check_file_creatable(tmp_path, "--save")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        prepare_folder(tmp_path / "runs", "--plot")


def test_an_unwritable_folder_is_found_by_trying(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError) as info:
        check_file_creatable(tmp_path / "x.json", "--metrics-json")
    assert str(info.value) == (f"--metrics-json {tmp_path / 'x.json'}: cannot write in {tmp_path} (Permission denied); "
                               "choose another path.")


def test_a_failed_atomic_write_names_the_path_and_leaves_nothing(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")

    def half_then_fail(file):
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError) as info:
        atomic_write(target, half_then_fail)
    assert str(info.value).startswith(f"cannot write {target} (No space left on device); ")
    assert ".tmp" not in str(info.value) and isinstance(info.value, OSError)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["m.json"]
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'missing' / 'x.npz'} "):
        atomic_write(tmp_path / "missing" / "x.npz", lambda file: None)


def test_write_json_creates_its_folder(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert path.read_text() == '{\n  "x": 1\n}\n'


def test_a_fifo_is_refused_not_replaced_and_a_link_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError) as info:
        check_file_creatable(fifo, "--save")
    assert str(info.value) == (f"--save {fifo}: {fifo} is a FIFO (named pipe), not a regular file, and writing there "
                               "would replace it; give the path of a regular file or a new one.")
    with pytest.raises(OutputError, match="is a FIFO"):
        atomic_write(fifo, lambda file: file.write(b"x"))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["pipe"]
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target.name)
    write_json(link, {"x": 1})
    assert link.is_symlink() and json.loads(target.read_text()) == {"x": 1}


def test_same_file_sees_through_spellings_and_links(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("y.npz").write_bytes(b"x")
    Path("link.npz").symlink_to("y.npz")
    assert same_file("y.npz", "./y.npz") and same_file("link.npz", tmp_path / "y.npz")
    assert same_file("new.json", "./sub/../new.json") and not same_file("y.npz", "y.json")
    with pytest.raises(OutputError) as info:
        refuse_overlap("./link.npz", "--json", {"the checkpoint being scored": "y.npz", "nothing": None})
    assert str(info.value) == ("--json ./link.npz is the checkpoint being scored, and writing there would replace it; "
                               "give --json another path.")


def test_a_signal_while_a_file_is_written_waits_until_it_is_whole(tmp_path):
    """Ctrl-C in the middle of atomic_write (here sent by the writer itself, as a user's could land): the file is
    written whole, no temporary file stays, and the KeyboardInterrupt comes after, as if Ctrl-C had just arrived."""
    import signal

    target = tmp_path / "c.npz"

    def write(file):
        file.write(b"first half, ")
        os.kill(os.getpid(), signal.SIGINT)
        file.write(b"second half")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            outputs.atomic_write(target, write)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert target.read_bytes() == b"first half, second half"
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]


def test_signals_held_delivers_them_afterwards_to_the_handler_there_was():
    import signal

    arrived = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: arrived.append(signum))
    try:
        with outputs.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert arrived == []
        assert arrived == [signal.SIGTERM]  # once: it stops the same thing either way
    finally:
        signal.signal(signal.SIGTERM, previous)
