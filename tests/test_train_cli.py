"""scripts/train.py end to end on tiny IDX datasets: options, outputs, resume, Ctrl-C, NaN and bad input."""

import importlib.util
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
from click.testing import CliRunner

from nets.commands import install_hint, script_command, torch_install_hint
from nets.data import datasets
from nets.train.engine import engine_for_run as nets_engine
from nets.train.interrupt import Interrupted
from idx_files import write_dataset, write_idx

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"


def load_train_command():
    if str(TRAIN_SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(TRAIN_SCRIPT.parent))  # the scripts import their shared helper as `_cli`
    spec = importlib.util.spec_from_file_location("train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


train_command = load_train_command()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=256, n_test=64, gzip=True, seed=1)


@pytest.fixture(autouse=True)
def in_a_fresh_directory(tmp_path_factory, monkeypatch):
    """Every run here starts in an empty directory of its own: runs write their default checkpoints (runs/...)
    into the current directory, which must not be the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No dataset anywhere (no $NETS_DATA, empty cwd, no Debian Fashion-MNIST) and downloads fail fast."""
    monkeypatch.delenv("NETS_DATA", raising=False)
    monkeypatch.setenv("NETS_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-dataset")
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def run(*args):
    result = CliRunner().invoke(train_command, [str(a) for a in args])
    return result


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    return lines[-1]


FAST = ("--epochs", 1, "--batch-size", 32)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_trains_and_writes_metrics_and_checkpoint(tiny_data, tmp_path, model):
    metrics_path, checkpoint = tmp_path / "m.json", tmp_path / "c.npz"
    result = run("--model", model, "--data-dir", tiny_data, "--dataset", "mnist", "--epochs", 2, "--batch-size", 32,
                 "--save", checkpoint, "--metrics-json", metrics_path)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "test accuracy:" in result.output
    metrics = json.loads(metrics_path.read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    for field in ("train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"):
        assert all(numpy.isfinite(e[field]) for e in metrics["epochs"])
    for field in ("model", "impl", "device", "dataset", "recipe", "optimizer", "lr", "batch_size", "train_seconds",
                  "versions"):
        assert field in metrics
    assert metrics["model"] == model and metrics["impl"] == "nets" and metrics["device"] == "cpu"
    assert metrics["versions"]["numpy"] == numpy.__version__
    with numpy.load(checkpoint, allow_pickle=False) as arrays:
        assert int(arrays["meta/epoch"]) == 2
        assert ("conv1.weight" if model == "cnn" else "fc3.weight") in arrays.files


def test_learns_the_tiny_dataset(tiny_data, tmp_path):
    metrics_path = tmp_path / "m.json"
    result = run("--model", "mlp", "--data-dir", tiny_data, "--dataset", "mnist", "--epochs", 8, "--batch-size", 32,
                 "--metrics-json", metrics_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(metrics_path.read_text())["test_accuracy"] >= 0.9


def test_quiet_prints_only_the_final_accuracy(tiny_data):
    result = run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--quiet")
    assert result.exit_code == 0
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith("test accuracy:")


def test_torch_impl_through_the_same_door(tiny_data, tmp_path):
    pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    checkpoint, metrics_path = tmp_path / "t.npz", tmp_path / "t.json"
    result = run("--impl", "torch", "--model", "cnn", "--data-dir", tiny_data, *FAST, "--save", checkpoint,
                 "--metrics-json", metrics_path)
    assert result.exit_code == 0, result.output
    assert json.loads(metrics_path.read_text())["impl"] == "torch"
    with numpy.load(checkpoint, allow_pickle=False) as arrays:
        assert arrays["conv1.weight"].shape == (16, 1, 3, 3)
        assert "optim/exp_avg/conv1.weight" in arrays.files


def test_nets_and_torch_start_from_the_same_weights_and_stay_close(tiny_data, tmp_path):
    pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    losses = {}
    for impl in ("nets", "torch"):
        path = tmp_path / f"{impl}.json"
        result = run("--impl", impl, "--model", "mlp", "--data-dir", tiny_data, "--epochs", 2, "--batch-size", 32,
                     "--dtype", "float64", "--metrics-json", path, "--quiet")
        assert result.exit_code == 0, result.output
        losses[impl] = [e["train_loss"] for e in json.loads(path.read_text())["epochs"]]
    numpy.testing.assert_allclose(losses["nets"], losses["torch"], rtol=1e-6)


def test_notebook_recipe_and_explicit_overrides(tiny_data, tmp_path):
    name = "notebook"
    path = tmp_path / "m.json"
    result = run("--model", "mlp", "--recipe", name, "--data-dir", tiny_data, "--epochs", 1, "--metrics-json", path,
                 "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads(path.read_text())
    assert ((metrics["optimizer"], metrics["lr"], metrics["batch_size"], metrics["epochs"][0]["epoch"])
            == ("sgd", 0.01, 1, 1))
    assert metrics["recipe"] == "notebook"
    result = run("--model", "cnn", "--recipe", name, "--data-dir", tiny_data, "--epochs", 1, "--batch-size", 64,
                 "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "1e-4", "--seed", 3,
                 "--dtype", "float64", "--metrics-json", path, "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads(path.read_text())
    assert (metrics["recipe"], metrics["optimizer"], metrics["lr"]) == ("notebook", "sgd", 0.05)
    assert (metrics["batch_size"], metrics["momentum"], metrics["weight_decay"]) == (64, 0.9, 1e-4)
    assert (metrics["seed"], metrics["dtype"]) == (3, "float64")


@pytest.mark.parametrize("impl", ["nets", "torch"])
def test_two_plus_two_epochs_resumed_equal_four_in_one_go(tiny_data, tmp_path, impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    common = ("--impl", impl, "--model", "cnn", "--data-dir", tiny_data, "--batch-size", 64, "--schedule", "constant",
              "--quiet")
    assert run(*common, "--epochs", 4, "--save", tmp_path / "once.npz").exit_code == 0
    assert run(*common, "--epochs", 2, "--save", tmp_path / "split.npz").exit_code == 0
    result = run("--resume", tmp_path / "split.npz", "--epochs", 4, "--save", tmp_path / "split.npz", "--quiet")
    assert result.exit_code == 0, result.output
    with numpy.load(tmp_path / "once.npz") as once, numpy.load(tmp_path / "split.npz") as split:
        assert int(split["meta/epoch"]) == 4
        for name in ("conv1.weight", "conv2.bias", "fc1.weight", "fc2.weight", "optim/exp_avg_sq/fc1.weight"):
            numpy.testing.assert_array_equal(once[name], split[name], err_msg=name)


def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(tiny_data, tmp_path):
    """Ctrl-C (simulated by the hidden --stop-after-steps) under a one-cycle schedule, then --resume."""
    common = ("--model", "mlp", "--data-dir", tiny_data, "--batch-size", 32, "--epochs", 3)
    assert run(*common, "--save", tmp_path / "once.npz", "--quiet").exit_code == 0
    result = run(*common, "--save", tmp_path / "cut.npz", "--stop-after-steps", 13)
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output and "Traceback" not in result.output
    assert "interrupted after 1 full epoch and 5 steps of epoch 2: checkpoint written to" in result.output
    with numpy.load(tmp_path / "cut.npz") as cut:
        assert int(cut["meta/epoch"]) == 1  # 8 steps per epoch: stopped in epoch 2, step 5
    assert run("--resume", tmp_path / "cut.npz", "--save", tmp_path / "cut.npz", "--quiet").exit_code == 0
    with numpy.load(tmp_path / "once.npz") as once, numpy.load(tmp_path / "cut.npz") as cut:
        for name in ("fc1.weight", "fc3.bias", "optim/exp_avg/fc2.weight"):
            numpy.testing.assert_array_equal(once[name], cut[name], err_msg=name)


@pytest.mark.parametrize("save", [True, False], ids=["save", "default-path"])
def test_real_ctrl_c_in_a_fresh_empty_directory_writes_a_checkpoint_and_exits_130(tiny_data, tmp_path, save):
    """A real SIGINT, in a fresh clone's situation: an empty working directory, no checkpoints/ folder."""
    fresh = tmp_path / "fresh-clone"
    fresh.mkdir()
    checkpoint = fresh / "runs" / ("ctrlc.npz" if save else "mnist-mlp-nets.npz")
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), "--model", "mlp", "--data-dir", str(tiny_data), "--epochs", "100000",
         "--batch-size", "16", *(["--save", "runs/ctrlc.npz"] if save else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=fresh,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first_epoch = ""
        while not first_epoch.startswith("epoch "):
            first_epoch = process.stdout.readline()
            assert first_epoch, process.stderr.read()
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint written to" in stderr and ".tmp" not in stderr
    with numpy.load(checkpoint, allow_pickle=False) as arrays:
        assert int(arrays["meta/epoch"]) >= 1


def _two_ctrl_c(tiny_data, folder) -> tuple[bool, int, str]:
    """Train in `folder`, send SIGINT, then another as soon as the checkpoint's temporary file shows; -> (whether
    the second one landed while it was being written, exit status, stderr)."""
    folder.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT), "--model", "cnn", "--data-dir", str(tiny_data), "--epochs", "100000",
         "--batch-size", "16", "--save", "c.npz"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=folder,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        while not process.stdout.readline().startswith("epoch "):
            assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)  # into the next epoch, so that the Ctrl-C checkpoint is written mid-epoch
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while not any(name.endswith(".tmp") for name in os.listdir(folder)) and time.monotonic() < deadline:
            time.sleep(0.0002)
        caught_writing = any(name.endswith(".tmp") for name in os.listdir(folder))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return caught_writing, process.returncode, stderr


def test_a_second_ctrl_c_while_the_checkpoint_is_written_neither_loses_it_nor_lies(tiny_data, tmp_path):
    """Two SIGINTs (as `timeout` can send): the second lands while the first one's checkpoint is being written (its
    temporary file is there; a few tries, as the window is milliseconds). The checkpoint is finished, and the
    message says truly where it stopped."""
    for attempt in range(5):
        folder = tmp_path / f"try{attempt}"
        caught_writing, returncode, stderr = _two_ctrl_c(tiny_data, folder)
        assert returncode == 130, stderr
        assert "Traceback" not in stderr and "no training step had completed" not in stderr
        with numpy.load(folder / "c.npz", allow_pickle=False) as arrays:
            epoch, step = int(arrays["meta/epoch"]), int(arrays["meta/step_in_epoch"])
        where = f"after {epoch} full epoch{'s' if epoch != 1 else ''}" + (
            f" and {step} step{'s' if step != 1 else ''} of epoch {epoch + 1}" if step else "")
        assert stderr.strip().splitlines()[-1] == (f"interrupted {where}: checkpoint written to c.npz; continue with "
                                                   "--resume c.npz")
        assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]
        if caught_writing:
            break
    assert caught_writing, "the second SIGINT never landed while the checkpoint was being written"


def test_ctrl_c_with_no_save_in_a_fresh_directory_creates_checkpoints_and_resumes(tiny_data, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    common = ("--model", "mlp", "--data-dir", tiny_data, "--batch-size", 32, "--epochs", 2)
    result = run(*common, "--no-save", "--stop-after-steps", 3)
    assert result.exit_code == 130, result.output
    written = Path("checkpoints") / "mlp-nets-interrupted.npz"
    assert "Saving no checkpoint (--no-save); Ctrl-C still saves one to checkpoints/mlp-nets-interrupted.npz" in (
        result.output)
    assert f"interrupted after 3 steps of epoch 1: checkpoint written to {written}" in result.output
    assert ".tmp" not in result.output
    assert run("--resume", written, "--quiet").exit_code == 0
    assert sorted(os.listdir(fresh / "checkpoints")) == ["mlp-nets-interrupted.json", "mlp-nets-interrupted.npz"]


def test_a_run_with_no_save_writes_nothing_and_says_so(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--no-save")
    assert result.exit_code == 0, result.output
    assert os.listdir(tmp_path) == []
    assert result.output.splitlines()[-2:] == ["checkpoint: none written (--no-save)",
                                               "metrics: none written (pass --metrics-json PATH)"]
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--no-save", "--save", "x.npz").exit_code == 2


def test_a_run_keeps_a_checkpoint_by_default_and_says_where(tiny_data, tmp_path, monkeypatch):
    """make train in a fresh clone: runs/<dataset>-<model>-<impl>.npz and its metrics beside it, said at the end,
    with a command to score it that works from here as it is printed."""
    monkeypatch.chdir(tmp_path)
    result = run("--model", "cnn", "--data-dir", tiny_data, *FAST)
    assert result.exit_code == 0, result.output
    checkpoint, metrics = Path("runs/mnist-cnn-nets.npz"), Path("runs/mnist-cnn-nets.json")
    assert sorted(os.listdir("runs")) == [metrics.name, checkpoint.name]
    assert f"Saving a checkpoint after every epoch to {checkpoint}, metrics to {metrics}." in result.output
    assert ", batch 32, 1 epoch, shifts of up to 2 pixels," in result.output.splitlines()[0]  # not "1 epochs"
    hint_line, metrics_line = result.output.splitlines()[-2:]
    assert hint_line.startswith(f"checkpoint: {checkpoint}; score it with: ") and metrics_line == f"metrics: {metrics}"
    hint = hint_line.split("score it with: ", 1)[1]
    assert hint.endswith(f"scripts/evaluate.py {checkpoint} --data-dir {tiny_data}")
    scored = subprocess.run(shlex.split(hint) + ["--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert scored.returncode == 0 and "test accuracy:" in scored.stdout, scored.stderr
    with numpy.load(checkpoint) as arrays:
        assert int(arrays["meta/epoch"]) == 1
    assert json.loads(metrics.read_text())["epochs"][0]["epoch"] == 1
    # the fallback dataset names the path: no --dataset, MNIST absent, Fashion-MNIST found
    monkeypatch.delenv("NETS_DATA", raising=False)
    monkeypatch.setenv("NETS_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tiny_data)
    fallback = run("--model", "mlp", "--impl", "nets", *FAST, "--quiet")
    assert fallback.exit_code == 0, fallback.output
    assert Path("runs/fashion-mnist-mlp-nets.npz").is_file() and not Path("runs/mnist-mlp-nets.npz").exists()


def test_a_new_run_never_replaces_another_runs_checkpoint(tiny_data, tmp_path, monkeypatch):
    """A second run of the same kind (finished, or stopped by Ctrl-C) gets the next number; the first run's
    checkpoint and metrics stay as they were, and each metrics JSON describes the checkpoint beside it."""
    monkeypatch.chdir(tmp_path)
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--quiet").exit_code == 0
    first = {name: (Path("runs") / name).read_bytes() for name in ("mnist-mlp-nets.npz", "mnist-mlp-nets.json")}
    second = run("--model", "mlp", "--data-dir", tiny_data, *FAST)
    assert second.exit_code == 0, second.output
    assert ("Saving a checkpoint after every epoch to runs/mnist-mlp-nets-2.npz (a new name: runs/mnist-mlp-nets.npz "
            "holds an earlier run, kept as it is), metrics to runs/mnist-mlp-nets-2.json.") in second.output
    assert second.output.splitlines()[-2].startswith("checkpoint: runs/mnist-mlp-nets-2.npz; score it with: ")
    stopped = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 3, "--batch-size", 32,
                  "--stop-after-steps", 11)  # Ctrl-C in epoch 2
    assert stopped.exit_code == 130, stopped.output
    assert "checkpoint written to runs/mnist-mlp-nets-3.npz" in stopped.output
    assert {name: (Path("runs") / name).read_bytes() for name in first} == first
    assert sorted(os.listdir("runs")) == sorted(f"mnist-mlp-nets{n}.{ext}" for n in ("", "-2", "-3")
                                                for ext in ("npz", "json"))
    for number, (epoch, step) in (("-2", (1, 0)), ("-3", (1, 3))):
        described = json.loads(Path(f"runs/mnist-mlp-nets{number}.json").read_text())
        with numpy.load(f"runs/mnist-mlp-nets{number}.npz") as arrays:
            assert (int(arrays["meta/epoch"]), int(arrays["meta/step_in_epoch"])) == (epoch, step)
            assert json.loads(str(arrays["meta/metrics"])) == described["epochs"]
        assert described["checkpoint"] == f"runs/mnist-mlp-nets{number}.npz"
        assert described.get("interrupted") == ({"epoch": 2, "step_in_epoch": 3} if step else None)


def test_fashion_mnist_files_given_as_a_folder_are_recognised_by_their_checksums(tmp_path, monkeypatch):
    """--data-dir with the published Fashion-MNIST files and no --dataset: trained and named as Fashion-MNIST (its
    recipe, its classes), saying so; an explicit --dataset mnist that the files contradict is one line."""
    import hashlib

    clothes = write_dataset(tmp_path / "downloads", n_train=64, n_test=16, seed=3)
    published = {name: hashlib.md5(datasets.read_idx_bytes(path, ndim=3 if "images" in name else 1)).hexdigest()
                 for name, path in datasets.dataset_files(clothes)[0].items()}
    monkeypatch.setitem(datasets.CONTENT_MD5, "fashion-mnist", published)  # these files play the published release
    monkeypatch.chdir(tmp_path)
    result = run("--model", "cnn", "--data-dir", clothes, *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"note: the files in {clothes} are Fashion-MNIST (they match its published checksums), not MNIST: using "
        "Fashion-MNIST's name, classes and recipe.")
    assert "left-right flips and shifts of up to 1 pixel" in result.output.splitlines()[1]  # the clothes recipe
    with numpy.load("runs/fashion-mnist-cnn-nets.npz") as arrays:
        assert str(arrays["meta/dataset"]) == "fashion-mnist"
    line = one_line_error(run("--model", "cnn", "--data-dir", clothes, *FAST, "--dataset", "mnist"))
    assert line == (f"error: the files in {clothes} are Fashion-MNIST (they match its published checksums), not MNIST "
                    "as --dataset mnist says; leave out --dataset, or give --dataset fashion-mnist.")
    assert sorted(os.listdir("runs")) == ["fashion-mnist-cnn-nets.json", "fashion-mnist-cnn-nets.npz"]
    digits = write_dataset(tmp_path / "digits", n_train=64, n_test=16, seed=4)  # a model of other data, resumed
    assert run("--model", "mlp", "--data-dir", digits, *FAST, "--save", "digits.npz", "--quiet").exit_code == 0
    line = one_line_error(run("--resume", "digits.npz", "--data-dir", clothes, "--epochs", 2, "--save", "more.npz"))
    assert line == (f"error: the files in {clothes} are Fashion-MNIST (they match its published checksums), not MNIST "
                    "as digits.npz (trained on it) says; resume with the data it was trained on, or train afresh.")


def test_a_resumed_run_writes_back_to_its_checkpoint_and_says_so(tiny_data, tmp_path):
    checkpoint = tmp_path / "c.npz"
    common = ("--model", "mlp", "--data-dir", tiny_data, "--batch-size", 32, "--schedule", "constant")
    assert run(*common, "--epochs", 1, "--save", checkpoint, "--quiet").exit_code == 0
    result = run("--resume", checkpoint, "--epochs", 3)
    assert result.exit_code == 0, result.output
    assert f"Saving a checkpoint after every epoch back to the checkpoint it resumed from, to {checkpoint}" in (
        result.output)
    assert (f"checkpoint: {checkpoint} (written back to the checkpoint it resumed from); score it with: "
            f"{script_command('evaluate', checkpoint, '--data-dir', tiny_data)}") in result.output
    with numpy.load(checkpoint) as arrays:
        assert int(arrays["meta/epoch"]) == 3
    assert [e["epoch"] for e in json.loads((tmp_path / "c.json").read_text())["epochs"]] == [1, 2, 3]
    elsewhere = tmp_path / "more.npz"  # --save sends it elsewhere, and the resumed checkpoint stays as it was
    before = checkpoint.read_bytes()
    assert run("--resume", checkpoint, "--epochs", 4, "--save", elsewhere, "--quiet").exit_code == 0
    assert checkpoint.read_bytes() == before and int(numpy.load(elsewhere)["meta/epoch"]) == 4


def test_a_resume_that_cannot_write_back_is_refused_before_training(tiny_data, tmp_path, monkeypatch):
    from nets import outputs

    folder = tmp_path / "read-only"
    checkpoint = folder / "c.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint, "--quiet").exit_code == 0
    real_mkstemp = outputs.tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # as a read-only folder answers, even to root
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(outputs.tempfile, "mkstemp", read_only)
    result = run("--resume", checkpoint, "--epochs", 2)
    line = one_line_error(result)
    assert line == (f"error: --resume {checkpoint}: cannot write in {folder} (Permission denied); pass --save PATH "
                    "to write the resumed run elsewhere.")
    assert "Training" not in result.output
    elsewhere = run("--resume", checkpoint, "--epochs", 2, "--schedule", "constant", "--save", tmp_path / "e.npz")
    assert elsewhere.exit_code == 0, elsewhere.output


@pytest.mark.parametrize("option", ["--save", "--metrics-json", "--plot", "ctrl-c"])
def test_an_unwritable_output_is_refused_before_training_naming_the_users_path(tiny_data, tmp_path, monkeypatch,
                                                                                option):
    monkeypatch.chdir(tmp_path)
    blocker = Path("blocker")
    blocker.write_text("a file where a folder should be")
    if option == "ctrl-c":  # --no-save: Ctrl-C would write into checkpoints/, where a file is in the way
        Path("checkpoints").write_text("a file where a folder should be")
        args, named = ("--no-save",), "checkpoints"
    else:
        target = blocker / ("plots" if option == "--plot" else "out.npz")
        args, named = (option, target), str(target)
    line = one_line_error(run("--model", "mlp", "--data-dir", tiny_data, *FAST, *args))
    assert line.startswith(f"error: {option if option != 'ctrl-c' else 'the Ctrl-C checkpoint'} {named}")
    assert "is a file, not a folder" in line and ".tmp" not in line
    assert line.endswith("pass --save PATH to put it elsewhere." if option == "ctrl-c" else "choose another path.")
    assert "Training" not in run("--model", "mlp", "--data-dir", tiny_data, *FAST, *args).output


@pytest.fixture
def dev_null_guarded(monkeypatch):
    """Replacing, renaming over or removing /dev/null fails the test instead of happening (tests here run as root)."""
    def guarded(real):
        def call(*args, **kwargs):
            if any(isinstance(arg, (str, os.PathLike)) and os.path.realpath(arg) == os.devnull for arg in args):
                raise AssertionError(f"os.{real.__name__}{args} would have replaced {os.devnull}")
            return real(*args, **kwargs)
        return call

    for name in ("replace", "rename", "unlink", "remove"):
        monkeypatch.setattr(os, name, guarded(getattr(os, name)))


@pytest.mark.parametrize("option", ["--save", "--metrics-json"])
@pytest.mark.parametrize("special", ["fifo", "/dev/null"])
def test_an_output_that_is_not_a_regular_file_is_refused_not_replaced(tiny_data, tmp_path, option, special,
                                                                       dev_null_guarded):
    if special == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
        kind = "a FIFO (named pipe)"
    else:
        target, kind = Path(os.devnull), "a character device"
    result = run("--model", "mlp", "--data-dir", tiny_data, *FAST, option, target)
    line = one_line_error(result)
    assert line == (f"error: {option} {target}: {target} is {kind}, not a regular file, and writing there would "
                    "replace it; give the path of a regular file or a new one.")
    assert "Training" not in result.output
    mode = os.lstat(target).st_mode
    assert stat.S_ISFIFO(mode) if special == "fifo" else stat.S_ISCHR(mode)


@pytest.mark.parametrize("option", ["--resume", "--save", "--metrics-json", "--data-dir", "--plot"])
def test_an_empty_path_is_refused_in_one_line_before_anything(tiny_data, tmp_path, monkeypatch, option):
    """--resume "$CHECKPOINT" with the variable unset must not start a fresh run."""
    monkeypatch.chdir(tmp_path)
    result = run("--model", "mlp", "--epochs", 1, *(("--data-dir", tiny_data) if option != "--data-dir" else ()),
                 option, "")
    line = one_line_error(result, code=2)
    assert line == f"error: {option} is empty (''); give a path, or leave the option out (is a shell variable unset?)."
    assert result.output.strip() == line and os.listdir(tmp_path) == []


def test_the_metrics_never_go_over_a_checkpoint_or_a_dataset_file(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = Path("c.npz")
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint, "--quiet").exit_code == 0
    before = checkpoint.read_bytes()
    Path("link.npz").symlink_to("c.npz")
    line = one_line_error(run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", "c.npz",
                              "--metrics-json", "./c.npz"))
    assert line == ("error: --metrics-json ./c.npz is the checkpoint's own path, and writing there would replace it; "
                    "give --metrics-json another path.")
    line = one_line_error(run("--resume", "link.npz", "--epochs", 2, "--save", "d.npz", "--metrics-json", "c.npz"))
    assert line.startswith("error: --metrics-json c.npz is the checkpoint --resume reads, and writing there")
    data_file = tiny_data / "train-labels-idx1-ubyte.gz"
    data_before = data_file.read_bytes()
    for option in ("--save", "--metrics-json"):
        line = one_line_error(run("--model", "mlp", "--data-dir", tiny_data, *FAST, option, data_file))
        assert line.startswith(f"error: {option} {data_file} is the dataset file {data_file}, and writing there")
    assert checkpoint.read_bytes() == before and data_file.read_bytes() == data_before
    assert sorted(os.listdir(tmp_path)) == ["c.json", "c.npz", "link.npz"]


def test_a_save_that_fails_mid_run_names_the_users_path(tiny_data, tmp_path, monkeypatch):
    from nets import outputs

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", no_space)
    checkpoint = tmp_path / "c.npz"
    line = one_line_error(run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint))
    assert line == (f"error: cannot write {checkpoint} (No space left on device); check that its folder exists, is "
                    "writable and has space, or choose another path.")
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    checkpoint = tmp_path / "good.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 1, "--save", checkpoint, "--quiet").exit_code == 0
    before = checkpoint.read_bytes()
    result = run("--resume", checkpoint, "--epochs", 3, "--lr", "1e30", "--schedule", "constant",
                 "--save", checkpoint)
    line = one_line_error(result, code=3)
    assert "loss became" in line and "--lr" in line and str(checkpoint) in line
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_parameters_that_diverge_with_a_finite_loss_are_never_saved(tiny_data, tmp_path, model):
    """One SGD step per epoch at lr 1e39 (infinite in float32): the loss of the step is finite (it is computed before
    the update), the parameters after it are not. The epoch-end save refuses them and keeps the last good file."""
    checkpoint = tmp_path / "x.npz"
    assert run("--model", model, "--data-dir", tiny_data, "--epochs", 1, "--optimizer", "sgd", "--schedule", "constant",
               "--lr", "0.001", "--save", checkpoint, "--quiet").exit_code == 0
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    result = run("--resume", checkpoint, "--epochs", 3, "--lr", "1e39", "--batch-size", 256)
    line = one_line_error(result, code=3)
    assert line.startswith("error: the parameters became NaN or infinite after 2 full epochs (")
    assert line.endswith(f"while the loss was still finite; training stopped without saving them. Try a smaller "
                         f"--lr. The last good checkpoint is {checkpoint} (after 1 full epoch).")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    # a fresh run that diverges before any save says that none was written
    fresh = run("--model", model, "--data-dir", tiny_data, "--epochs", 2, "--optimizer", "sgd", "--schedule",
                "constant", "--lr", "1e39", "--batch-size", 256, "--save", tmp_path / "fresh.npz")
    assert one_line_error(fresh, code=3).endswith("No checkpoint was written.")
    assert not (tmp_path / "fresh.npz").exists()


@pytest.mark.parametrize("args, message", [
    (("--epochs", "-1"), "Invalid value for '--epochs'"),
    (("--dataset", "cifar"), "Invalid value for '--dataset'"),
    (("--lr", "0"), "Invalid value for '--lr'"),
    (("--model", "resnet"), "Invalid value for '--model'"),
])
def test_bad_options_are_usage_errors(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_momentum_with_adam_is_refused(tiny_data):
    line = one_line_error(run("--data-dir", tiny_data, "--optimizer", "adam", "--momentum", "0.9"))
    assert "--momentum applies to --optimizer sgd" in line


def test_checkpoint_of_the_other_model_is_refused(tiny_data, tmp_path):
    checkpoint = tmp_path / "mlp.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", checkpoint, "--quiet").exit_code == 0
    line = one_line_error(run("--model", "cnn", "--resume", checkpoint, "--epochs", 2))
    assert "holds an MLP" in line and "--model cnn" in line


def test_resume_of_a_corrupt_checkpoint_is_one_line(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    line = one_line_error(run("--resume", broken))
    assert str(broken) in line


def test_gpu_without_cuda_says_what_is_missing(tiny_data):
    import backend

    if backend.gpu_problem() is None:
        pytest.skip("a working GPU is present; this checks the message on machines without one")
    line = one_line_error(run("--device", "gpu", "--data-dir", tiny_data))
    assert "--device gpu is not available" in line and ("CuPy" in line or "CUDA" in line or "NVIDIA GPU" in line)


def test_device_auto_picks_the_cpu_without_a_word_of_cuda_where_there_is_no_gpu(tiny_data):
    import backend

    problem = backend.gpu_problem()
    if problem is None or not problem.absent:
        pytest.skip("an NVIDIA driver is loaded here; this checks machines without a GPU")
    for impl in ("nets", "torch"):
        result = run("--device", "auto", "--model", "mlp", "--impl", impl, "--data-dir", tiny_data, *FAST, "--no-save")
        assert result.exit_code == 0, result.output
        assert f"Training mlp ({impl}) on cpu" in result.output.splitlines()[0]
        assert not re.search("cuda|cupy|driver|--device auto", result.output, re.IGNORECASE), result.output


@pytest.mark.parametrize("damage, expected", [
    ("truncate", "truncated"),
    ("magic", "magic"),
    ("count", "images but"),
    ("label", "label"),
])
def test_bad_idx_files_give_one_line(tmp_path, damage, expected):
    data = write_dataset(tmp_path / "bad", n_train=64, n_test=16)
    images = data / "train-images-idx3-ubyte"
    labels = data / "train-labels-idx1-ubyte"
    if damage == "truncate":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "magic":
        blob = bytearray(images.read_bytes())
        blob[0] = 0x12  # the first two bytes of an IDX file are zero
        images.write_bytes(bytes(blob))
    elif damage == "count":
        write_idx(labels, numpy.zeros(63, dtype=numpy.uint8))
    else:
        write_idx(labels, numpy.full(64, 12, dtype=numpy.uint8))
    line = one_line_error(run("--data-dir", data, *FAST))
    assert expected in line.lower() and "train-" in line


def test_data_dir_without_files_names_them(tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_line_error(run("--data-dir", tmp_path / "empty"))
    assert "train-images-idx3-ubyte" in line


def test_falls_back_to_fashion_mnist_and_says_so_first(offline, tmp_path, monkeypatch):
    debian = write_dataset(tmp_path / "debian-fashion", n_train=64, n_test=16, gzip=True)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", debian)
    result = run("--model", "mlp", *FAST)
    assert result.exit_code == 0, result.output
    first_line = result.output.splitlines()[0]
    assert "MNIST is not available" in first_line and "Fashion-MNIST" in first_line


def test_explicit_mnist_offline_names_every_way_to_get_it(offline, tmp_path, monkeypatch):
    debian = write_dataset(tmp_path / "debian-fashion", n_train=64, n_test=16)
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", debian)
    line = one_line_error(run("--dataset", "mnist", *FAST))
    assert "--data-dir" in line and "NETS_DATA" in line and "download" in line
    assert "--dataset fashion-mnist works offline" in line


def test_plot_dir_gets_pngs(tiny_data, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")
    result = run("--model", "cnn", "--data-dir", tiny_data, *FAST, "--plot", tmp_path / "plots", "--quiet")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["confusion_matrix.png", "first_layer_filters.png", "misclassified.png", "training_curves.png"]


@pytest.mark.parametrize("given, recorded, said", [("flip", "flip", "left-right flips"),
                                                   ("shift+flip", "flip+shift:2", "flips and shifts of up to 2 pixels"),
                                                   ("shift:1", "shift:1", "shifts of up to 1 pixel,")])
def test_augment_option_is_recorded(tiny_data, tmp_path, given, recorded, said):
    path = tmp_path / "m.json"
    result = run("--model", "cnn", "--data-dir", tiny_data, *FAST, "--augment", given, "--metrics-json", path)
    assert result.exit_code == 0, result.output
    assert said in result.output.splitlines()[0]
    assert json.loads(path.read_text())["augment"] == recorded


@pytest.mark.parametrize("dataset, model, recorded", [("mnist", "mlp", "shift:2"), ("mnist", "cnn", "shift:2"),
                                                      ("fashion-mnist", "cnn", "flip+shift:1"),
                                                      ("fashion-mnist", "mlp", "none")])
def test_the_default_recipe_augments_as_auto_says(tiny_data, tmp_path, dataset, model, recorded):
    path = tmp_path / "m.json"
    result = run("--model", model, "--dataset", dataset, "--data-dir", tiny_data, *FAST, "--metrics-json", path,
                 "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text())["augment"] == recorded


@pytest.mark.parametrize("value", ["shift:0", "shift:12", "rotate", "flip+flip"])
def test_an_unknown_augmentation_is_a_usage_error(value):
    result = run("--augment", value)
    assert result.exit_code == 2 and "Invalid value for '--augment'" in result.output, result.output
    assert "Traceback" not in result.output


def test_an_augmentation_of_thousands_of_digits_is_a_short_usage_error():
    """int() of a 5000-digit string fails on Python's digit limit; the option says what a shift may be."""
    result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--augment", "shift:" + "1" * 5000],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--augment': augmentation 'shift:111111111111111111111111... (5006 characters)': "
        "a shift must be 1 to 8 pixels.")


def test_a_save_path_too_long_for_the_file_system_is_refused_before_training(tiny_data, tmp_path):
    for save in (tmp_path / ("a" * 300 + ".npz"), tmp_path / ("b" * 300) / "cnn.npz"):
        result = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--data-dir", str(tiny_data), "--save", str(save)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and result.stdout == "", result.stdout
        assert result.stderr == (f"error: --save {save}: the name is too long for the file system (ENAMETOOLONG); "
                                 "choose a shorter one (most file systems take at most 255 bytes per folder or file "
                                 "name).\n")
    longest = tmp_path / ("c" * 250 + ".npz")  # its metrics file, c...c.json, is 255 bytes: both fit, and are written
    result = run("--model", "mlp", "--data-dir", tiny_data, "--epochs", 1, "--save", longest, "--quiet")
    assert result.exit_code == 0, result.output
    assert longest.is_file() and longest.with_suffix(".json").is_file()


@pytest.mark.parametrize("impl", ["nets", "torch"])
def test_shifted_and_flipped_runs_resume_exactly(tiny_data, tmp_path, impl):
    """Interrupted mid-epoch, then resumed: the same weights as one uninterrupted run, moves and all (batches of
    48 from 256 images: each epoch ends with a batch of 16)."""
    if impl == "torch":
        pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    common = ("--impl", impl, "--model", "cnn", "--data-dir", tiny_data, "--batch-size", 48, "--epochs", 2,
              "--augment", "flip+shift:2")
    assert run(*common, "--save", tmp_path / "once.npz", "--quiet").exit_code == 0
    result = run(*common, "--save", tmp_path / "cut.npz", "--stop-after-steps", 8)
    assert result.exit_code == 130, result.output
    assert run("--resume", tmp_path / "cut.npz", "--save", tmp_path / "cut.npz", "--quiet").exit_code == 0
    with numpy.load(tmp_path / "once.npz") as once, numpy.load(tmp_path / "cut.npz") as cut:
        for name in ("conv1.weight", "fc2.bias", "optim/exp_avg/conv2.weight"):
            numpy.testing.assert_array_equal(once[name], cut[name], err_msg=name)
    # and the moves matter: the same run without them ends elsewhere
    assert run(*common[:-2], "--augment", "none", "--save", tmp_path / "plain.npz", "--quiet").exit_code == 0
    with numpy.load(tmp_path / "once.npz") as once, numpy.load(tmp_path / "plain.npz") as plain:
        assert not numpy.array_equal(once["conv1.weight"], plain["conv1.weight"])


def test_images_of_another_size_are_refused_before_training(tmp_path):
    data = write_dataset(tmp_path / "small", n_train=32, n_test=8, rows=20, cols=20)
    line = one_line_error(run("--data-dir", data, *FAST))
    assert "20x20 images" in line and "28x28" in line


def test_plot_without_matplotlib_is_refused_before_training(tiny_data, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    line = one_line_error(run("--data-dir", tiny_data, *FAST, "--plot", tmp_path / "plots"))
    assert line.endswith(f"matplotlib is not installed; install it with `{install_hint('plot')}`.")
    assert not (tmp_path / "plots").exists()


def test_torch_impl_without_torch_is_one_line(tiny_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    line = one_line_error(run("--impl", "torch", "--data-dir", tiny_data, *FAST))
    assert line == (f"error: --impl torch: this needs PyTorch, which is not installed; install its CPU build with "
                    f"`{torch_install_hint()}` (leave out --index-url for the CUDA build, several GB).")


def test_resume_of_a_checkpoint_with_broken_training_state_is_one_line(tiny_data, tmp_path):
    from nets import checkpoint as checkpoints

    good = tmp_path / "good.npz"
    assert run("--model", "mlp", "--data-dir", tiny_data, *FAST, "--save", good, "--quiet").exit_code == 0
    saved = checkpoints.load_checkpoint(good)
    common = dict(optimizer_state=saved.optimizer_state, epoch=saved.epoch)

    no_rng = tmp_path / "no-rng.npz"
    checkpoints.save_checkpoint(no_rng, saved.params, saved.model_config, config=saved.config, metrics=saved.metrics,
                                **common)
    line = one_line_error(run("--resume", no_rng, "--epochs", 2))
    assert "no RNG state" in line and str(no_rng) in line

    odd_config = tmp_path / "odd-config.npz"
    config = {**saved.config, "hyper": {**saved.config["hyper"], "warp_factor": 9}}
    checkpoints.save_checkpoint(odd_config, saved.params, saved.model_config, config=config, rng_state=saved.rng_state,
                                **common)
    line = one_line_error(run("--resume", odd_config, "--epochs", 2))
    assert "warp_factor" in line and str(odd_config) in line


@pytest.mark.parametrize("empty", ["train", "test"])
def test_an_empty_split_is_refused_before_training(tmp_path, empty):
    data = write_dataset(tmp_path / "empty", n_train=0 if empty == "train" else 32, n_test=0 if empty == "test" else 8)
    line = one_line_error(run("--model", "mlp", "--data-dir", data, *FAST))
    name = "train-images-idx3-ubyte" if empty == "train" else "t10k-images-idx3-ubyte"
    assert f"{data / name} holds no images" in line and f"needs {empty} images" in line
    assert "Training" not in run("--model", "mlp", "--data-dir", data, *FAST).output


@pytest.mark.parametrize("option, value, requirement", [
    ("--lr", "nan", "a finite number > 0"), ("--lr", "inf", "a finite number > 0"), ("--momentum", "nan", "in [0, 1)"),
    ("--weight-decay", "inf", "a finite number >= 0"), ("--weight-decay", "nan", "a finite number >= 0")])
def test_non_finite_numbers_are_usage_errors(tiny_data, option, value, requirement):
    result = run("--model", "mlp", "--optimizer", "sgd", "--data-dir", tiny_data, *FAST, option, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': '{value}' is not {requirement}." in result.output
    assert "Training" not in result.output


@pytest.mark.parametrize("impl", ["nets", "torch"])
def test_extending_a_finished_one_cycle_run_is_never_silent(tiny_data, tmp_path, impl):
    if impl == "torch":
        pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    checkpoint = tmp_path / "c.npz"
    common = ("--impl", impl, "--model", "mlp", "--data-dir", tiny_data, "--batch-size", 32)
    assert run(*common, "--epochs", 1, "--save", checkpoint, "--quiet").exit_code == 0
    before = checkpoint.read_bytes()

    line = one_line_error(run("--resume", checkpoint, "--epochs", 2, "--save", checkpoint))
    assert "one-cycle schedule planned for 1 epoch (batch 32" in line and "re-plans it for 2 epochs" in line
    assert "--schedule constant --lr F" in line and "--schedule onecycle" in line and "--epochs 2" in line
    assert checkpoint.read_bytes() == before

    replanned = run("--resume", checkpoint, "--epochs", 2, "--schedule", "onecycle", "--save", tmp_path / "r.npz")
    assert replanned.exit_code == 0, replanned.output
    note = next(line for line in replanned.output.splitlines() if line.startswith("note: "))
    assert "re-plans it for 2 epochs" in note and "only a resume with the planned --epochs continues exactly" in note

    constant = run("--resume", checkpoint, "--epochs", 2, "--schedule", "constant", "--lr", "1e-4",
                   "--save", tmp_path / "k.npz")
    assert constant.exit_code == 0, constant.output
    assert [line for line in constant.output.splitlines() if line.startswith("note:")] == [  # the change is said
        f"note: {checkpoint} was trained under a one-cycle schedule planned for 1 epoch (peak lr 0.003); this run goes "
        "on at the constant lr 0.0001 (--schedule constant)."]


def _rewrite(path, mutate):
    with numpy.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    mutate(arrays)
    numpy.savez(path, **arrays)


@pytest.fixture(scope="module")
def mid_epoch_checkpoint(tiny_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("cut") / "cut.npz"
    result = run("--model", "mlp", "--data-dir", tiny_data, "--batch-size", 32, "--epochs", 2, "--save", path,
                 "--stop-after-steps", 3)
    assert result.exit_code == 130, result.output
    return path


def _json_entry(key, mutate):
    def change(arrays):
        arrays[key] = numpy.array(json.dumps(mutate(json.loads(str(arrays[key][()])))))
    return change


@pytest.mark.parametrize("mutate, expected", [
    (lambda a: a.update({"meta/step_in_epoch": numpy.array(999)}),
     "has meta/step_in_epoch 999 (31968 images of epoch 1 done), but an epoch here has only 256 images (8 steps of "
     "batch 32)"),
    (lambda a: a.pop("meta/epoch_rng_state"), "stopped at meta/step_in_epoch 3 but has no meta/epoch_rng_state"),
    (lambda a: a.update({"meta/epoch_rng_state": numpy.array('{"bit_generator": "PCG64", "state": 7}')}),
     "unusable meta/epoch_rng_state"),
    (lambda a: a.update({"meta/epoch_rng_state": numpy.array(json.dumps(numpy.random.MT19937(1).state,
                                                                        default=lambda value: value.tolist()))}),
     "its meta/epoch_rng_state is a state of MT19937, but training shuffles with PCG64"),
    (_json_entry("optim/hyperparameters", lambda h: {**h, "betas": [0.9, 1.0]}),
     "optim/hyperparameters betas[1] = 1.0"),
    (_json_entry("meta/config", lambda c: {**c, "hyper": {**c["hyper"], "lr": float("nan")}}),
     "meta/config): hyper.lr must be a finite number > 0, got nan."),
    (_json_entry("meta/config", lambda c: {**c, "hyper": {**c["hyper"], "schedule": "cosine"}}),
     "hyper.schedule must be one of constant, onecycle, got 'cosine'."),
    (_json_entry("meta/metrics", lambda m: {"epochs": m}), "meta/metrics entry that is not the per-epoch list"),
    (lambda a: a.update({"fc1.weight": numpy.full_like(a["fc1.weight"], numpy.nan)}),
     "parameter fc1.weight holds"),
])
def test_resuming_a_checkpoint_with_bad_metadata_is_one_line_naming_the_field(mid_epoch_checkpoint, tmp_path, mutate,
                                                                                expected):
    path = tmp_path / "bad.npz"
    path.write_bytes(mid_epoch_checkpoint.read_bytes())
    _rewrite(path, mutate)
    result = run("--resume", path, "--quiet")
    line = one_line_error(result)
    assert expected in line and str(path) in line
    assert "Training" not in result.output


def test_resuming_mid_epoch_with_another_batch_size_sees_each_image_of_that_epoch_once(tiny_data, tmp_path):
    """Ctrl-C after 3 batches of 32, resumed with batches of 80, Ctrl-C again, resumed with batches of 64: the epoch
    goes on from its 97th image in its own order, so together the three runs see each of its 256 images once, in the
    order of the uninterrupted run."""
    from nets.train.run import train_run
    from nets.train.settings import RunOptions

    batches = []

    def recording(settings, model):  # the nets engine, noting the images of each batch it gathers
        engine = nets_engine(settings, model)
        gather = engine.batch

        def batch(images, labels, index, moves=None):
            batches.append(numpy.asarray(index).copy())
            return gather(images, labels, index, moves)

        engine.batch = batch
        return engine

    def train(lines=None, **given):
        options = RunOptions(model="mlp", data_dir=str(tiny_data), epochs=2, schedule="constant", quiet=True, **given)
        batches.clear()
        try:
            train_run(options, {"nets": recording}, log=[].append if lines is None else lines.append)
        except Interrupted:
            pass
        return list(batches)

    once = numpy.concatenate(train(batch_size=32, save=str(tmp_path / "once.npz"))[:8])
    assert sorted(once) == list(range(256))
    cut = tmp_path / "cut.npz"
    first = train(batch_size=32, save=str(cut), stop_after_steps=3)
    notes = []
    second = train(notes, resume=str(cut), batch_size=80, stop_after_steps=1)
    with numpy.load(cut) as arrays:
        assert int(arrays["meta/images_in_epoch"]) == 96 + 80 and int(arrays["meta/epoch"]) == 0
    third = train(resume=str(cut), batch_size=64)
    assert [len(index) for index in first + second + third[:2]] == [32, 32, 32, 80, 64, 16]
    numpy.testing.assert_array_equal(numpy.concatenate(first + second + third[:2]), once)
    assert sorted(numpy.concatenate(third[2:])) == list(range(256))  # epoch 2: whole, in batches of 64
    assert (f"note: {cut} stopped 96 of 256 images into epoch 1; this run trains the other 160 of that epoch in its "
            "order, in batches of 80, so each image is seen once in the epoch.") in notes


def test_resuming_a_pytorch_state_dict_says_why_it_cannot(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    import backend
    from nets.baseline.checkpoint import save_torch_state_dict
    from nets.nn.models import build_model

    path = save_torch_state_dict(tmp_path / "mlp.pt", build_model("mlp", backend=backend.get_backend("cpu")))
    line = one_line_error(run("--resume", path))
    assert all(part in line for part in (f"{path} is a PyTorch file (torch.save)",
                                         "no optimizer state, epoch or RNG state", "cannot resume",
                                         f"scripts/evaluate.py {path}"))


@pytest.mark.parametrize("model, optimizer", [("mlp", ("--optimizer", "adam")), ("cnn", ("--optimizer", "adam")),
                                              ("mlp", ("--optimizer", "sgd", "--momentum", "0.9"))])
def test_torch_interrupted_mid_epoch_then_resumed_equals_uninterrupted(tiny_data, tmp_path, model, optimizer):
    """As for the nets: the saved optimizer state goes back into torch.optim and the run continues bit for bit."""
    pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    common = ("--impl", "torch", "--model", model, "--data-dir", tiny_data, "--batch-size", 32, "--epochs", 3,
              *optimizer)
    assert run(*common, "--save", tmp_path / "once.npz", "--quiet").exit_code == 0
    result = run(*common, "--save", tmp_path / "cut.npz", "--stop-after-steps", 13)
    assert result.exit_code == 130, result.output
    with numpy.load(tmp_path / "cut.npz") as cut:
        assert (int(cut["meta/epoch"]), int(cut["meta/step_in_epoch"])) == (1, 5)
    assert run("--resume", tmp_path / "cut.npz", "--save", tmp_path / "cut.npz", "--quiet").exit_code == 0
    with numpy.load(tmp_path / "once.npz") as once, numpy.load(tmp_path / "cut.npz") as cut:
        assert sorted(once.files) == sorted(cut.files)
        compared = [name for name in once.files if not name.startswith("meta/") and name != "optim/hyperparameters"]
        assert any(name.startswith("optim/") and "/" in name[len("optim/"):] for name in compared)
        for name in compared:
            numpy.testing.assert_array_equal(once[name], cut[name], err_msg=name)
        if "adam" in optimizer:  # torch.optim.SGD keeps no step count
            assert int(cut["optim/step"]) == int(once["optim/step"]) == 24


def test_the_torch_baseline_on_the_gpu_needs_no_cupy(monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed; pip install -e .[test]")
    from dataclasses import replace

    import backend
    import nets.baseline.engine as baseline_engine
    from nets.train.settings import resolve_hyperparameters
    from nets.train.run import build_engine
    from nets.errors import DeviceError
    from nets.train.settings import RunError, RunSettings

    engines = {"nets": nets_engine, "torch": baseline_engine.engine_for_run}
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)  # no CuPy at all
    settings = RunSettings(model="mlp", impl="torch", dataset="mnist", recipe="default", seed=0, dtype="float32",
                           hyperparameters=resolve_hyperparameters("default", "mlp"), device="gpu")
    asked = []

    class OnCuda:  # a torch engine that records its device instead of moving to a CUDA device this machine lacks
        def __init__(self, config, **settings):
            asked.append(settings["device"])

        def load_state(self, state):
            pass

    with monkeypatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: True)
        patch.setattr(baseline_engine, "TorchEngine", OnCuda)
        _, host = build_engine(settings, engines)
    assert (host.name, asked) == ("cpu", ["gpu"])  # initialised on the host, computed by torch on CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RunError, match="--impl torch: .*CUDA build of torch") as error:
        build_engine(settings, engines)
    assert "CuPy" not in str(error.value)
    assert build_engine(replace(settings, device="auto"), engines)[0].backend.name == "cpu"
    with pytest.raises(DeviceError, match="CuPy is not installed"):
        build_engine(replace(settings, impl="nets"), engines)


def test_a_recipe_that_is_not_one_is_a_usage_error_naming_the_recipes(tiny_data, tmp_path):
    result = run("--model", "mlp", "--recipe", "seed", "--data-dir", tiny_data, "--epochs", 1, "--no-save")
    assert result.exit_code == 2 and "Training" not in result.output
    assert "Invalid value for '--recipe': 'seed' is not one of 'default', 'notebook'." in result.output
    # a checkpoint whose meta/config names no recipe of these is refused in one line when resumed
    checkpoint = tmp_path / "c.npz"
    assert run("--model", "mlp", "--recipe", "notebook", "--data-dir", tiny_data, "--epochs", 1, "--batch-size", 32,
               "--save", checkpoint, "--quiet").exit_code == 0
    _rewrite(checkpoint, _json_entry("meta/config", lambda c: {**c, "recipe": "seed"}))
    line = one_line_error(run("--resume", checkpoint, "--epochs", 2))
    assert "recipe must be one of default, notebook, got 'seed'." in line and str(checkpoint) in line


def test_help_says_what_each_recipe_sets_and_gives_examples():
    result = run("--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as one line, whatever the terminal's width
    for option, defaults in [("--epochs", "[default recipe: 20; notebook: 5]"),
                             ("--batch-size", "[default recipe: 128; notebook: mlp 1, cnn 32]"),
                             ("--optimizer", "[default recipe: adam; notebook: mlp sgd, cnn adam]"),
                             ("--lr", "[default recipe: 0.003; notebook: 0.01]"),
                             ("--schedule", "[default recipe: onecycle; notebook: constant]"),
                             ("--augment", "[default recipe: auto; notebook: none]")]:
        assert option in text and defaults in text.split(option, 1)[1].split(" --", 1)[0], option
    assert "Examples:" in result.output and "python scripts/train.py --resume" in result.output
    assert "--recipe [default|notebook]" in result.output
