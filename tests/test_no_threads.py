"""train.py and bench.py on a machine that cannot start threads (RuntimeError: can't start new thread, as at the
process limit): one line says the batches run on one thread, and the work goes on. The scripts run as real processes
under a wrapper that makes the CPU worker threads fail to start (and claims 2 cores, so that a worker thread is
wanted beside the calling one on any machine); no thread limit is approached."""

import subprocess
import sys
from pathlib import Path

import pytest

from idx_files import write_dataset

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = """
import runpy, sys, threading
sys.path[:0] = [{scripts!r}, {root!r}]
import nets.train.parallel as parallel
parallel.usable_cores = lambda: 2
started = threading.Thread.start
def start(thread):
    if thread.name.startswith("nets-worker"):
        raise RuntimeError("can't start new thread")
    return started(thread)
threading.Thread.start = start
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
WARNING = ("warning: could not start 1 CPU worker thread (can't start new thread); "
           "each batch runs on one thread instead.")


def run_without_threads(script, *args, cwd):
    program = WRAPPER.format(scripts=str(ROOT / "scripts"), root=str(ROOT))
    return subprocess.run([sys.executable, "-c", program, str(ROOT / "scripts" / f"{script}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def test_training_goes_on_on_one_thread(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=64, n_test=32, seed=0)
    result = run_without_threads("train", "--model", "cnn", "--data-dir", data, "--epochs", 1, "--batch-size", 64,
                                 "--save", tmp_path / "cnn.npz", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [WARNING]
    assert result.stdout.startswith("test accuracy: ") and (tmp_path / "cnn.npz").is_file()


@pytest.mark.slow
def test_the_bench_goes_on_on_one_thread(tmp_path):
    result = run_without_threads("bench", "--device", "cpu", "--models", "cnn", "--batch-sizes", "4", "--repeats", 1,
                                 "--warmup", 1, "--sample-seconds", 0.001, "--gemm-size", 32, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert WARNING in result.stderr.splitlines() and "Traceback" not in result.stderr
    assert "| cnn | cpu | 4 |" in result.stdout
