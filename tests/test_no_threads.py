"""train.py and bench.py on a machine that cannot start threads (RuntimeError: can't start new thread, as at the
process limit): one line says the batches run on one thread, and the work goes on. The scripts run as real processes
in which a sitecustomize module makes the CPU worker threads fail to start (and claims 2 cores, so that a worker
thread is wanted beside the calling one on any machine); it reaches the processes bench.py starts for each
implementation too. No thread limit is approached."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from idx_files import write_dataset

ROOT = Path(__file__).resolve().parents[1]
NO_THREADS = """
import threading
import nets.train.parallel as parallel
parallel.usable_cores = lambda: 2
started = threading.Thread.start
def start(thread):
    if thread.name.startswith("nets-worker"):
        raise RuntimeError("can't start new thread")
    return started(thread)
threading.Thread.start = start
"""
WARNING = ("warning: could not start 1 CPU worker thread (can't start new thread); "
           "each batch runs on one thread instead.")


def run_without_threads(script, *args, cwd, patches):
    """The script in a process (and every Python process it starts) whose worker threads cannot start; `patches`: a
    folder for the sitecustomize module that says so."""
    patches.mkdir(exist_ok=True)
    (patches / "sitecustomize.py").write_text(NO_THREADS)
    path = os.pathsep.join([str(patches), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": path})


def test_training_goes_on_on_one_thread(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=64, n_test=32, seed=0)
    result = run_without_threads("train", "--model", "cnn", "--data-dir", data, "--epochs", 1, "--batch-size", 64,
                                 "--save", tmp_path / "cnn.npz", "--quiet", cwd=tmp_path, patches=tmp_path / "patches")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [WARNING]
    assert result.stdout.startswith("test accuracy: ") and (tmp_path / "cnn.npz").is_file()


@pytest.mark.slow
def test_the_bench_goes_on_on_one_thread(tmp_path):
    result = run_without_threads("bench", "--device", "cpu", "--models", "cnn", "--batch-sizes", "4", "--repeats", 1,
                                 "--warmup", 1, "--sample-seconds", 0.001, "--gemm-size", 32, cwd=ROOT,
                                 patches=tmp_path / "patches")
    assert result.returncode == 0, result.stderr
    assert WARNING in result.stderr.splitlines() and "Traceback" not in result.stderr
    assert "| cnn | cpu | 4 |" in result.stdout
