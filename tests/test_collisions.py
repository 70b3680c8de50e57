"""Runs started together in one folder never take each other's files: 8 real train.py processes at once, each keeping
its own numbered checkpoint and the metrics JSON of that very run beside it (the run id and the per-epoch history in
both are the same); and the same for the Ctrl-C checkpoints of --no-save runs. nets.outputs.write_new, the one
step that claims a name, is tested on its own too."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from nets import outputs
from idx_files import write_dataset

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
RUNS = 8  # processes at once: within the process limit the machine shares


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=128, n_test=32, gzip=True, seed=1)


def start_together(folder: Path, *args) -> list:
    """RUNS train.py processes in `folder`, started at once; -> their (exit status, stdout, stderr)."""
    folder.mkdir()
    processes = [subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *map(str, args)], cwd=folder,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(RUNS)]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append((process.returncode, stdout, stderr))
    return results


def assert_pairs(folder: Path, stem: str) -> list:
    """RUNS checkpoints named stem.npz, stem-2.npz, ... in `folder`, each with its own run's metrics JSON beside it;
    -> the checkpoints."""
    checkpoints = sorted(folder.glob(f"{stem}*.npz"))
    assert len(checkpoints) == RUNS, sorted(os.listdir(folder))
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [path.name for path in checkpoints] + [path.with_suffix(".json").name for path in checkpoints])
    run_ids = set()
    for checkpoint in checkpoints:
        metrics = json.loads(checkpoint.with_suffix(".json").read_text())
        with numpy.load(checkpoint, allow_pickle=False) as arrays:
            history = json.loads(str(arrays["meta/metrics"]))
            run_id = str(arrays["meta/run_id"]) if "meta/run_id" in arrays else None
        assert Path(metrics["checkpoint"]).name == checkpoint.name
        assert metrics["epochs"] == history  # the seconds of each epoch tell one run from another
        assert run_id is not None and metrics.get("run_id") == run_id
        run_ids.add(run_id)
    assert len(run_ids) == RUNS
    return checkpoints


def test_eight_runs_started_together_keep_eight_checkpoints_each_with_its_own_metrics(tiny_data, tmp_path):
    results = start_together(tmp_path / "work", "--model", "mlp", "--data-dir", tiny_data, "--epochs", 1,
                             "--batch-size", 32)
    for returncode, stdout, stderr in results:
        assert returncode == 0 and "Traceback" not in stderr, stderr
    checkpoints = assert_pairs(tmp_path / "work" / "runs", "mnist-mlp-nets")
    said = sorted(line.split()[1].rstrip(";") for _, stdout, _ in results for line in stdout.splitlines()
                  if line.startswith("checkpoint: "))
    assert said == sorted(f"runs/{path.name}" for path in checkpoints)  # each run names the file it kept


def test_eight_no_save_runs_stopped_together_keep_eight_ctrl_c_checkpoints(tiny_data, tmp_path):
    results = start_together(tmp_path / "work", "--model", "mlp", "--data-dir", tiny_data, "--epochs", 2,
                             "--batch-size", 32, "--no-save", "--stop-after-steps", 2)
    for returncode, _, stderr in results:
        assert returncode == 130 and "Traceback" not in stderr, stderr
    checkpoints = assert_pairs(tmp_path / "work" / "checkpoints", "mlp-nets-interrupted")
    said = sorted(stderr.split("checkpoint written to ")[1].split(";")[0] for _, _, stderr in results)
    assert said == sorted(f"checkpoints/{path.name}" for path in checkpoints)


def test_write_new_never_replaces_a_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "x.npz"
    assert outputs.write_new(target, lambda temporary: Path(temporary).write_bytes(b"first"))
    assert not outputs.write_new(target, lambda temporary: Path(temporary).write_bytes(b"second"))
    assert target.read_bytes() == b"first"

    def fails(temporary):
        Path(temporary).write_bytes(b"half")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        outputs.write_new(tmp_path / "y.npz", fails)
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]


def test_write_new_claims_by_exclusive_creation_where_there_are_no_hard_links(tmp_path, monkeypatch):
    def no_links(source, destination):
        raise PermissionError(1, "Operation not permitted")  # as FAT or some network file systems answer

    monkeypatch.setattr(outputs.os, "link", no_links)
    target = tmp_path / "x.json"
    assert outputs.write_new(target, lambda temporary: Path(temporary).write_text("{}"))
    assert not outputs.write_new(target, lambda temporary: Path(temporary).write_text("[]"))
    assert target.read_text() == "{}" and sorted(os.listdir(tmp_path)) == ["x.json"]
