"""SIGTERM and SIGHUP (a batch scheduler, `timeout`, `docker stop`, a closed terminal) end training as Ctrl-C does:
the checkpoint of the last completed step is written, one line says where, and the exit status is 128 + the
signal's number (143, 129; 130 for Ctrl-C). Real train.py processes and real signals throughout; where the moment
matters, the test waits for what the process shows (an epoch line, a temporary file, a connection) rather than for
a time."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from idx_files import write_dataset

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=256, n_test=64, gzip=True, seed=1)


def train(folder: Path, *args, env=UNBUFFERED) -> subprocess.Popen:
    folder.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *map(str, args)], cwd=folder, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def after_first_epoch(process: subprocess.Popen) -> None:
    line = None
    while not (line or "").startswith("epoch "):
        line = process.stdout.readline()
        assert line, process.stderr.read()


def temporary_files(folder: Path) -> list:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


def where(checkpoint: Path) -> str:
    with numpy.load(checkpoint, allow_pickle=False) as arrays:
        epoch, step = int(arrays["meta/epoch"]), int(arrays["meta/step_in_epoch"])
    return f"after {epoch} full epoch{'s' if epoch != 1 else ''}" + (
        f" and {step} step{'s' if step != 1 else ''} of epoch {epoch + 1}" if step else "")


@pytest.mark.parametrize("name, code, no_save", [("SIGTERM", 143, False), ("SIGHUP", 129, True)])
def test_sigterm_and_sighup_during_training_save_the_last_step_and_exit_128_plus_the_signal(tiny_data, tmp_path, name,
                                                                                            code, no_save):
    folder = tmp_path / "work"
    process = train(folder, "--model", "mlp", "--data-dir", tiny_data, "--epochs", 100000, "--batch-size", 16,
                    *(["--no-save"] if no_save else []))
    try:
        after_first_epoch(process)
        time.sleep(0.05)  # into the next epoch
        process.send_signal(getattr(signal, name))
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    checkpoint = Path("checkpoints/mlp-nets-interrupted.npz" if no_save else "runs/mnist-mlp-nets.npz")
    assert process.returncode == code, stderr
    assert stderr == (f"interrupted by {name} {where(folder / checkpoint)}: checkpoint written to {checkpoint}; "
                      f"continue with --resume {checkpoint}\n")
    assert not temporary_files(folder)
    resumed = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--resume", str(checkpoint), "--stop-after-steps",
                              "3", "--quiet"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 130 and "checkpoint written to" in resumed.stderr, resumed.stderr  # it went on


def _signal_during_a_save(folder: Path, tiny_data, first: int | None) -> tuple:
    """Train the CNN in `folder`; send `first` (if any) after the first epoch, then SIGTERM the moment a checkpoint's
    temporary file shows; -> (whether it landed while the file was written, exit status, stderr)."""
    process = train(folder, "--model", "cnn", "--data-dir", tiny_data, "--epochs", 100000, "--batch-size", 16,
                    "--save", "c.npz")
    try:
        after_first_epoch(process)
        if first is not None:
            time.sleep(0.05)  # into the next epoch: the checkpoint this signal asks for is written mid-epoch
            process.send_signal(first)
        deadline = time.monotonic() + 30
        while not temporary_files(folder) and time.monotonic() < deadline:
            time.sleep(0.0002)
        caught_writing = bool(temporary_files(folder))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return caught_writing, process.returncode, stderr


@pytest.mark.parametrize("first", [None, signal.SIGINT], ids=["sigterm-during-an-epochs-save",
                                                               "sigterm-during-the-ctrl-c-save"])
def test_a_signal_during_a_save_neither_cuts_it_short_nor_leaves_a_temporary_file(tiny_data, tmp_path, first):
    """SIGTERM lands while a checkpoint is being written (its temporary file is there; a few tries, as the window is
    milliseconds): the checkpoint is finished, the temporary file removed, and the line says truly where it
    stopped."""
    for attempt in range(5):
        folder = tmp_path / f"try{attempt}"
        caught_writing, returncode, stderr = _signal_during_a_save(folder, tiny_data, first)
        assert returncode == (130 if first == signal.SIGINT else 143), stderr
        said = "interrupted" if first == signal.SIGINT else "interrupted by SIGTERM"
        assert stderr == (f"{said} {where(folder / 'c.npz')}: checkpoint written to c.npz; continue with "
                          "--resume c.npz\n")
        assert not temporary_files(folder)
        if caught_writing:
            break
    assert caught_writing, "SIGTERM never landed while the checkpoint was being written"


def test_sigterm_before_training_started_is_one_line_and_143(tmp_path):
    """While the data is being fetched (a mirror that accepts the connection and never answers)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(60)
        empty = tmp_path / "no-data"
        empty.mkdir()
        process = train(tmp_path / "work", "--model", "mlp", "--dataset", "mnist", env={
            **UNBUFFERED, "NETS_MIRROR": f"http://127.0.0.1:{server.getsockname()[1]}/", "NETS_DATA": str(empty)})
        try:
            connection, _ = server.accept()
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
            connection.close()
        finally:
            process.kill()
    assert (process.returncode, stderr) == (
        143, "interrupted by SIGTERM before training started; no checkpoint was written.\n")
    assert not [path for path in (tmp_path / "work").rglob("*") if path.is_file()]  # no partial download


@pytest.fixture(scope="module")
def interrupting_dataclasses(tmp_path_factory):
    """A dataclasses module, ahead of the standard library's, that sends SIGINT the moment it is imported: train.py's
    own imports (dataclasses among them) come after its first statement."""
    folder = tmp_path_factory.mktemp("interrupting")
    (folder / "dataclasses.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
        "raise ImportError('this dataclasses only interrupts')\n")
    return folder


def test_ctrl_c_in_train_pys_first_imports_is_one_line_and_130(interrupting_dataclasses, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(interrupting_dataclasses)}
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--help"], capture_output=True, text=True, timeout=60,
                            env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (130, "error: interrupted while starting; nothing was done.\n")


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_while_starting_are_one_line(tmp_path, name, code):
    folder = tmp_path / "interrupting"
    (folder / "numpy").mkdir(parents=True)
    (folder / "numpy" / "__init__.py").write_text(
        f"import os, signal, time\nos.kill(os.getpid(), signal.{name})\ntime.sleep(30)\n")
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(folder)}, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (code, f"error: interrupted by {name} while starting; nothing was "
                                                        "done.\n")


def test_ctrl_c_as_a_run_ends_is_never_a_traceback_nor_a_silent_death(tiny_data, tmp_path):
    """Ctrl-C the moment a run prints its last line, as it ends or exits: one line and 130, or (when the process was
    already gone) a finished run; never a traceback, click's "Aborted!" (exit 1), or an end by SIGINT without a
    word."""
    outcomes = []
    for attempt in range(8):
        process = train(tmp_path / f"try{attempt}", "--model", "mlp", "--data-dir", tiny_data, "--epochs", 1,
                        "--no-save")
        try:
            line = None
            while not (line or "").startswith("metrics: "):
                line = process.stdout.readline()
                assert line, process.stderr.read()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        outcomes.append((process.returncode, stderr))
    for returncode, stderr in outcomes:
        assert returncode in (0, 130), outcomes
        lines = stderr.splitlines()
        assert lines == [] if returncode == 0 else (len(lines) == 1 and "interrupted" in lines[0]), outcomes
        assert "Traceback" not in stderr and "Aborted" not in stderr, outcomes
