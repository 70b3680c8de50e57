"""train.py --graph and the hidden --device standin, end to end in subprocesses: a whole run on the CuPy stand-in
says it captured the step, and its checkpoint equals the eager run's bit for bit, resumed or not."""

import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from idx_files import write_dataset

pytest.importorskip("cupy", reason="the stand-in needs cupy importable (pip install -e .[standin])")

TRAIN = Path(__file__).resolve().parent.parent / "scripts" / "train.py"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("small"), n_train=200, n_test=40, seed=2)


def train(*arguments, cwd):
    return subprocess.run([sys.executable, str(TRAIN), *map(str, arguments)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def parameters(path) -> dict:
    with numpy.load(path) as saved:
        return {name: saved[name] for name in saved.files if not name.startswith("meta/")}


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_a_captured_run_on_the_standin_equals_the_eager_run(small_data, tmp_path, model):
    common = ("--device", "standin", "--model", model, "--data-dir", small_data, "--epochs", 2, "--batch-size", 16,
              "--augment", "flip+shift:1", "--dataset", "mnist")
    captured = train(*common, "--graph", "on", "--save", tmp_path / "on.npz", cwd=tmp_path)
    eager = train(*common, "--graph", "off", "--save", tmp_path / "off.npz", cwd=tmp_path)
    assert captured.returncode == 0 and eager.returncode == 0, captured.stderr + eager.stderr
    assert "training step captured as a CUDA graph (" in captured.stdout
    assert "training step runs eager (--graph off)" in eager.stdout
    on, off = parameters(tmp_path / "on.npz"), parameters(tmp_path / "off.npz")
    assert on.keys() == off.keys() and any(name.startswith("optim/exp_avg") for name in on)
    for name in on:
        numpy.testing.assert_array_equal(on[name], off[name], err_msg=name)


def test_a_captured_run_stopped_mid_epoch_and_resumed_equals_the_whole_run(small_data, tmp_path):
    common = ("--device", "standin", "--model", "cnn", "--data-dir", small_data, "--epochs", 2, "--batch-size", 16,
              "--dataset", "mnist", "--graph", "on")
    whole = train(*common, "--save", tmp_path / "whole.npz", cwd=tmp_path)
    stopped = train(*common, "--save", tmp_path / "part.npz", "--stop-after-steps", 17, cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert stopped.returncode == 130 and "after 1 full epoch and 4 steps of epoch 2" in stopped.stderr, stopped.stderr
    resumed = train("--resume", tmp_path / "part.npz", "--device", "standin", "--graph", "on", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "training step captured as a CUDA graph" in resumed.stdout
    expected, got = parameters(tmp_path / "whole.npz"), parameters(tmp_path / "part.npz")
    for name in expected:
        numpy.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.mark.parametrize("arguments, message", [
    (("--graph", "on"), "--graph on captures the nets' fast training step on a GPU"),
    (("--graph", "on", "--impl", "torch"), "--graph on captures the nets' fast training step on a GPU"),
    (("--graph", "sometimes"), "Invalid value for '--graph'"),
])
def test_graph_on_where_it_cannot_be_is_one_line(small_data, tmp_path, arguments, message):
    result = train("--data-dir", small_data, "--epochs", 1, "--no-save", "--dataset", "mnist", *arguments, cwd=tmp_path)
    assert result.returncode in (1, 2) and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_standin_device_is_hidden_from_help(tmp_path):
    shown = train("--help", cwd=tmp_path).stdout
    assert "--graph [auto|on|off]" in shown and "[cpu|gpu|auto]" in shown and "standin" not in shown


FAULTS = Path(__file__).resolve().parent / "standin_faults.py"
INJECTED = {  # stage -> what the one line says after "(" (tests/standin_faults.py injects it)
    "lookup": "cuBLAS could not be set up: CuPy's cuBLAS could not be loaded (Failure finding",
    "create": "cuBLAS could not be set up: cublasCreate_v2 failed: CUBLAS_STATUS_ALLOC_FAILED)",
    "set-stream": "cuBLAS could not be set up: cublasSetStream_v2 failed: CUBLAS_STATUS_NOT_INITIALIZED)",
    "set-workspace": "cuBLAS could not be set up: cublasSetWorkspace_v2 failed: CUBLAS_STATUS_INVALID_VALUE)",
    "layout": "cuBLAS refused a product of the step: gemm: a of shape (16, 785) is neither C- nor F-contiguous",
}


FAULT_RUN = ("--device", "standin", "--model", "mlp", "--epochs", 1, "--batch-size", 16, "--dataset", "mnist",
             "--augment", "none")


@pytest.fixture(scope="module")
def eager_weights(small_data, tmp_path_factory):
    """The weights of the fault runs' settings trained with --graph off."""
    folder = tmp_path_factory.mktemp("eager")
    eager = train(*FAULT_RUN, "--data-dir", small_data, "--graph", "off", "--save", folder / "off.npz", cwd=folder)
    assert eager.returncode == 0, eager.stderr
    return parameters(folder / "off.npz")


@pytest.mark.parametrize("stage", list(INJECTED))
def test_a_cublas_failure_falls_back_to_eager_under_auto_and_stops_under_on(small_data, eager_weights, tmp_path, stage):
    """Each stage of the direct cuBLAS path failing on the stand-in: --graph auto says so in one line and trains on
    eagerly (the same weights as --graph off); --graph on stops with one line and exit 1."""
    common = (*FAULT_RUN, "--data-dir", small_data)
    auto = train_with_fault(stage, *common, "--save", tmp_path / "auto.npz", cwd=tmp_path)
    assert auto.returncode == 0, auto.stderr
    said = [line for line in auto.stdout.splitlines() if "CUDA graph" in line]
    assert len(said) == 1, said
    assert said[0].startswith("training step runs eager: capturing it as a CUDA graph failed ("), said
    assert INJECTED[stage] in said[0] and "Traceback" not in auto.stderr, said
    got = parameters(tmp_path / "auto.npz")
    for name in eager_weights:
        numpy.testing.assert_array_equal(got[name], eager_weights[name], err_msg=name)
    strict = train_with_fault(stage, *common, "--graph", "on", "--no-save", cwd=tmp_path)
    lines = strict.stderr.strip().splitlines()
    assert strict.returncode == 1 and len(lines) == 1, strict.stderr
    assert lines[0].startswith("error: the training step could not be captured as a CUDA graph (") and (
        INJECTED[stage] in lines[0] and lines[0].endswith("; run with --graph off.")), lines


def train_with_fault(stage, *arguments, cwd):
    return subprocess.run([sys.executable, str(FAULTS), stage, str(TRAIN), *map(str, arguments)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
