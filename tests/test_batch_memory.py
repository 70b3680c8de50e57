"""Memory follows the data: a batch size over the training images is one batch of the whole set, for the nets and
for torch; its buffers hold the images there are, not the batch size asked for."""

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from backend import get_backend
from nets.data.batches import EpochOrder
from idx_files import write_dataset

ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
IMAGES = 256


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("tiny"), n_train=IMAGES, n_test=64, gzip=True, seed=1)


def test_an_epoch_order_over_fewer_images_than_its_batch_size_holds_one_batch_of_them():
    order = EpochOrder(get_backend("cpu"), count=300, batch_size=10**12)
    order.start(numpy.arange(300)[::-1])
    assert order.batch_size == 300 and len(order) == 1
    (batch,) = order.batches()
    assert (batch.start, batch.size, batch.full, batch.last) == (0, 300, True, True)
    rows = order.rows(batch)
    assert rows.shape == (300,) and list(rows[:3]) == [299, 298, 297]


def train(tmp_path, data, impl, batch_size, name):
    """train.py in a child process -> (exit status, output, its peak resident memory in KiB, the saved arrays, the
    metrics JSON)."""
    save = tmp_path / f"{name}.npz"
    arguments = [str(TRAIN_SCRIPT), "--data-dir", str(data), "--impl", impl, "--model", "cnn", "--epochs", "1",
                 "--batch-size", str(batch_size), "--save", str(save), "--augment", "none"]
    # the peak of the child alone: a wrapper that runs it and reads its own children's peak
    measure = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
               "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(done.returncode)")
    finished = subprocess.run([sys.executable, "-c", measure, sys.executable, *arguments], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    (peak,) = [int(line[5:]) for line in finished.stderr.splitlines() if line.startswith("peak ")]
    if finished.returncode != 0:
        return finished.returncode, finished.stdout + finished.stderr, peak, None, None
    with numpy.load(save) as saved:
        arrays = {key: saved[key] for key in saved.files if not key.startswith("meta/")}
    return 0, finished.stdout, peak, arrays, json.loads(save.with_suffix(".json").read_text())


@pytest.mark.parametrize("impl", ["nets", "torch"])
def test_a_batch_size_over_the_images_trains_one_batch_of_the_whole_set(tmp_path, tiny_data, impl):
    if impl == "torch":
        pytest.importorskip("torch")
    code, output, whole_peak, whole, _ = train(tmp_path, tiny_data, impl, IMAGES, "whole")
    assert code == 0, output
    for batch_size in (10**8, 10**12, 10**30):
        code, output, peak, arrays, metrics = train(tmp_path, tiny_data, impl, batch_size, f"b{len(str(batch_size))}")
        assert code == 0 and "Traceback" not in output, output
        assert (f"batch size {batch_size} is more than the {IMAGES} training images: each step takes all "
                f"{IMAGES}") in output
        assert metrics["batch_size"] == IMAGES
        assert "conv1.weight" in whole and "optim/exp_avg/conv1.weight" in whole  # the parameters and their moments
        assert arrays.keys() == whole.keys() and all(numpy.array_equal(arrays[k], whole[k]) for k in whole)
        # the buffers are those of a batch of 256: 10**8 rows of int64 would be 800 MB more
        assert peak < whole_peak + 100 * 1024, (peak, whole_peak)
