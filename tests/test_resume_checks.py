"""A resume says what it changes, or refuses it, in one line: another --dataset is refused; another schedule is said;
other data files than the checkpoint recorded are said; a relative --data-dir is recorded as the absolute folder
it named, so a resume from another folder reads the same files (and an older checkpoint's relative one is said)."""

import json
import os
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner

from nets.data import datasets
from idx_files import write_dataset
from test_train_cli import one_line_error, train_command

FAST = ("--epochs", 1, "--batch-size", 32, "--schedule", "constant")  # a constant rate resumes for more epochs as is


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=128, n_test=32, gzip=True, seed=1)


@pytest.fixture(autouse=True)
def in_a_fresh_directory(tmp_path_factory, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


def run(*args):
    return CliRunner().invoke(train_command, [str(arg) for arg in args])


def notes(result) -> list:
    return [line for line in result.output.splitlines() if line.startswith("note:")]


def test_a_resume_that_names_another_dataset_is_refused_in_one_line(tiny_data, tmp_path):
    checkpoint = tmp_path / "c.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint, "--quiet").exit_code == 0
    before = checkpoint.read_bytes()
    line = one_line_error(run("--resume", checkpoint, "--dataset", "fashion-mnist", "--data-dir", tiny_data,
                              "--epochs", 2))
    assert line == (f"error: {checkpoint} was trained on MNIST; --dataset fashion-mnist would go on with other data. "
                    "Resume without --dataset, or train afresh with --dataset fashion-mnist.")
    assert checkpoint.read_bytes() == before
    same = run("--resume", checkpoint, "--dataset", "mnist", "--epochs", 2, "--quiet")
    assert same.exit_code == 0, same.output


def test_a_resume_under_another_schedule_says_so(tiny_data, tmp_path):
    checkpoint = tmp_path / "c.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--lr", 0.002,
               "--save", checkpoint, "--quiet").exit_code == 0
    changed = run("--resume", checkpoint, "--epochs", 3, "--schedule", "onecycle", "--save", tmp_path / "d.npz")
    assert changed.exit_code == 0, changed.output
    assert notes(changed) == [
        f"note: {checkpoint} was trained at the constant lr 0.002; this run goes on under a one-cycle schedule planned "
        "for 3 epochs (peak lr 0.002), from the point that schedule has reached by now (--schedule onecycle)."]
    unchanged = run("--resume", checkpoint, "--epochs", 2, "--save", tmp_path / "e.npz")
    assert unchanged.exit_code == 0 and notes(unchanged) == [], unchanged.output


def test_a_checkpoint_records_its_datas_checksums_and_a_resume_on_other_files_says_so(tiny_data, tmp_path):
    checkpoint = tmp_path / "c.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint, "--quiet").exit_code == 0
    loaded = datasets.load_dataset("mnist", tiny_data, download=False)
    with numpy.load(checkpoint, allow_pickle=False) as arrays:
        assert json.loads(str(arrays["meta/data_checksums"])) == loaded.checksums
    assert len(set(loaded.checksums.values())) == 4
    same = run("--resume", checkpoint, "--epochs", 2, "--save", tmp_path / "same.npz")
    assert same.exit_code == 0 and notes(same) == [], same.output
    other = write_dataset(tmp_path / "other", n_train=128, n_test=32, gzip=True, seed=2)  # same sizes, other images
    resumed = run("--resume", checkpoint, "--data-dir", other, "--epochs", 2, "--save", tmp_path / "other.npz")
    assert resumed.exit_code == 0, resumed.output
    assert notes(resumed) == [
        f"note: the files in {other} are not those {checkpoint} was trained on (t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte, train-images-idx3-ubyte, train-labels-idx1-ubyte differ from the checksums it "
        "recorded); training goes on with these."]


def test_a_resume_from_another_folder_reads_the_files_a_relative_data_dir_named(tiny_data, tmp_path, monkeypatch):
    """Trained in one folder with --data-dir data; resumed from another that has a data/ of its own: the files the run
    trained on are read again, not the other folder's."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, seed in ((first, 1), (second, 2)):
        write_dataset(folder / "data", n_train=128, n_test=32, gzip=True, seed=seed)
    monkeypatch.chdir(first)
    assert run("--model", "mlp", "--data-dir", "data", *FAST, "--save", "c.npz", "--quiet").exit_code == 0
    with numpy.load("c.npz", allow_pickle=False) as arrays:
        assert json.loads(str(arrays["meta/config"]))["data_dir"] == str(first / "data")
    monkeypatch.chdir(second)
    resumed = run("--resume", first / "c.npz", "--epochs", 2, "--save", "d.npz")
    assert resumed.exit_code == 0, resumed.output
    assert notes(resumed) == []
    assert json.loads(Path("d.json").read_text())["data_source"] == str(first / "data")


def test_an_older_checkpoints_relative_data_dir_is_said(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.symlink(tiny_data, tmp_path / "data")
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", "c.npz", "--quiet").exit_code == 0
    with numpy.load("c.npz", allow_pickle=False) as archive:
        arrays = dict(archive)
    config = json.loads(str(arrays["meta/config"]))
    arrays["meta/config"] = numpy.array(json.dumps({**config, "data_dir": "data"}))  # as recorded before
    numpy.savez("old.npz", **arrays)
    resumed = run("--resume", "old.npz", "--epochs", 2, "--save", "d.npz")
    assert resumed.exit_code == 0, resumed.output
    assert notes(resumed) == [f"note: old.npz names --data-dir data relative to the folder it was trained in; it is "
                              f"read from {tmp_path / 'data'} here (pass --data-dir to read another)."]
