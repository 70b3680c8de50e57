"""DataParallel: replicas on CPU threads compute exactly what one pass over the whole batch does."""

import threading
import time

import numpy
import pytest

import backend as backend_module
import nets.train.parallel as parallel_module
from nets.train.engine import NetsEngine
from nets.nn.models import build_model
from nets.optim import Adam
from nets.train.parallel import DataParallel
from layer_checks import mnist_like_images


def model_and_batch(name, count, dtype="float64", seed=0):
    cpu = backend_module.get_backend("cpu")
    model = build_model(name, backend=cpu, dtype=dtype, rng=numpy.random.default_rng(seed))
    rng = numpy.random.default_rng(seed + 1)
    images = mnist_like_images(rng, count).astype(dtype)  # mostly exact zeros: ties in the pooling
    x = images.reshape(count, *model.input_shape)
    labels = rng.integers(0, 10, count)
    return model, x, labels


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("count, workers", [(64, 2), (70, 2), (99, 3)])
def test_split_batch_gives_the_whole_batch_loss_gradients_and_logits(name, count, workers):
    model, x, labels = model_and_batch(name, count)
    loss, logits = model.loss_and_gradients(x, labels)
    expected = {key: value.copy() for key, value in model.gradients().items()}
    parallel = DataParallel(model, workers, min_per_worker=16)
    assert parallel.splits(count)
    parallel.gradients(x, labels)
    for key, value in model.gradients().items():
        numpy.testing.assert_allclose(value, expected[key], rtol=1e-10, atol=1e-14, err_msg=key)
    loss_sum, hits = parallel.totals()
    assert loss_sum == pytest.approx(float(loss) * count, rel=1e-12)
    assert hits == int((logits.argmax(axis=1) == labels).sum())
    # both predict in chunks (Model.predict_chunk) of other sizes: the same sums, rounded in another order
    numpy.testing.assert_allclose(parallel.forward(x), model.forward(x, train=False), rtol=1e-12, atol=1e-13)


def test_small_batches_are_not_split():
    model, _, _ = model_and_batch("cnn", 40)
    parallel = DataParallel(model, 2, min_per_worker=32)
    assert not parallel.splits(40) and not parallel.splits(63) and parallel.splits(64)


def test_replicas_compute_with_the_parameters_an_optimizer_updates():
    model, x, labels = model_and_batch("cnn", 64, dtype="float32")
    parallel = DataParallel(model, 2, min_per_worker=16)
    optimizer = Adam(model.parameters(), lr=0.1)
    before = parallel.forward(x)
    parallel.gradients(x, labels)
    optimizer.step()
    updated = model.forward(x, train=False)
    assert not numpy.allclose(updated, before, rtol=1e-3)  # the step changed the model's answers...
    # ...and the replicas' (float32, the products summed in chunks of other sizes: rounding of the logits' scale)
    numpy.testing.assert_allclose(parallel.forward(x), updated, rtol=1e-4, atol=1e-6 * numpy.abs(updated).max())


def test_a_training_step_matches_with_and_without_workers():
    results = []
    for workers in (1, 2):
        model, x, labels = model_and_batch("cnn", 64)
        engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend_module.get_backend("cpu"),
                            workers=workers)
        for _ in range(3):
            engine.train_step(x, labels)
        results.append((*engine.totals(), model.state_dict()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-10)
    assert results[0][1] == results[1][1]
    for key in results[0][2]:
        numpy.testing.assert_allclose(results[0][2][key], results[1][2][key], rtol=1e-8, atol=1e-12, err_msg=key)


def test_an_mlp_batch_gathered_into_its_input_with_ones_splits_across_workers():
    """The MLP's batch home is its first Linear's input_with_ones, (N, 785) with a column of ones; each replica takes
    the pixels and keeps one of its own (profile_step.py --workers 2 splits an MLP)."""
    results = []
    for workers in (1, 2):
        model, images, labels = model_and_batch("mlp", 64)
        engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend_module.get_backend("cpu"),
                            workers=workers)
        if engine.parallel is not None:
            engine.parallel.min_per_worker = 16  # the MLP is never split unless asked
        x, y = engine.batch(images, labels, numpy.arange(64))
        assert x.shape == (64, 785)
        engine.train_step(x, y)
        results.append(model.state_dict())
    for key in results[0]:
        numpy.testing.assert_allclose(results[0][key], results[1][key], rtol=1e-5, atol=1e-7, err_msg=key)


# ---------------------------------------------------------------------------------------------- no threads to be had


class _RefusedThread(threading.Thread):
    """A thread the machine cannot start, as at its process limit (the second one, with refuse_after=1)."""

    started = 0
    refuse_after = 0

    def start(self):
        if type(self).started >= type(self).refuse_after:
            raise RuntimeError("can't start new thread")
        type(self).started += 1
        super().start()


@pytest.mark.parametrize("refuse_after", [0, 1], ids=["none-start", "second-fails"])
def test_threads_that_cannot_start_leave_one_worker_and_say_so(monkeypatch, capsys, refuse_after):
    monkeypatch.setattr(parallel_module, "Thread", type("Refused", (_RefusedThread,), {"refuse_after": refuse_after}))
    model, x, labels = model_and_batch("cnn", 64)
    before = {thread for thread in threading.enumerate() if thread.name.startswith("nets-worker")}
    parallel = DataParallel(model, 3, min_per_worker=16)  # the calling thread and 2 worker threads
    assert capsys.readouterr().err == ("warning: could not start 2 CPU worker threads (can't start new thread); each "
                                       "batch runs on one thread instead.\n")
    assert parallel.workers == 1 and not parallel.splits(64) and not parallel.splits(10**6)
    for _ in range(50):  # the one thread that did start is stopped again
        if {thread for thread in threading.enumerate() if thread.name.startswith("nets-worker")} <= before:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("a worker thread that started was left running")
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), model.backend, workers=2)  # trains on one thread
    engine.train_step(x, labels)
    assert engine.parallel.workers == 1


def test_a_worker_runs_its_share_in_chunks_and_its_buffers_are_a_chunks():
    """Each worker runs forward and backward chunk by chunk (the CNN's train_chunk, 32), adding the chunks' gradients
    up weighted by their sizes: the whole batch's gradient, from buffers sized for one chunk."""
    model, x, labels = model_and_batch("cnn", 128)
    model.loss_and_gradients(x, labels)
    expected = {key: value.copy() for key, value in model.gradients().items()}
    parallel = DataParallel(model, 2, min_per_worker=16)
    parallel.gradients(x, labels)
    for key, value in model.gradients().items():
        numpy.testing.assert_allclose(value, expected[key], rtol=1e-10, atol=1e-14, err_msg=key)
    assert model.train_chunk == 32 and parallel._chunks(0, 64) == [(0, 32), (32, 64)]
    assert parallel._chunks(64, 99) == [(64, 82), (82, 99)]  # nearly equal chunks, none over 32
    for replica in parallel.replicas:
        conv1 = replica.layers[0][1]
        assert {shape for (key, shape, _) in conv1._buffers if key == "col"} == {(10, 32 * 26 * 26)}
