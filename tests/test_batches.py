"""Batches: every example once per epoch, a kept partial batch, seeded and resumable order, data left on the device."""

import numpy
import pytest

from backend import array_module
from nets.data.batches import Batches


def device_data(backend, count=10, features=3):
    """images (count, features) whose row i is filled with i, labels (count,) = 0..count-1, on the backend."""
    images = numpy.repeat(numpy.arange(count, dtype=numpy.float32)[:, None], features, axis=1)
    labels = numpy.arange(count, dtype=numpy.int64)
    return backend.asarray(images), backend.asarray(labels)


def epoch_labels(batches, backend):
    return [backend.to_numpy(y).tolist() for _, y in batches]


def test_every_example_once_per_epoch_with_a_partial_last_batch(backend):
    images, labels = device_data(backend, count=10)
    batches = Batches(images, labels, 4, rng=numpy.random.default_rng(0))
    assert len(batches) == 3
    for _ in range(3):
        seen = []
        sizes = []
        for x, y in batches:
            x_host, y_host = backend.to_numpy(x), backend.to_numpy(y)
            numpy.testing.assert_array_equal(x_host[:, 0], y_host)  # images and labels stay paired
            assert x_host.shape[1:] == (3,)
            sizes.append(len(y_host))
            seen.extend(y_host.tolist())
        assert sizes == [4, 4, 2]
        assert sorted(seen) == list(range(10))


@pytest.mark.parametrize("count, batch_size, expected", [(12, 4, 3), (13, 4, 4), (3, 10, 1), (0, 4, 0), (1, 1, 1)])
def test_len_counts_the_partial_batch(backend, count, batch_size, expected):
    images, labels = device_data(backend, count=count)
    batches = Batches(images, labels, batch_size, rng=numpy.random.default_rng(0))
    assert len(batches) == expected
    assert len(list(batches)) == expected


def test_same_seed_same_order_and_each_epoch_differs(backend):
    images, labels = device_data(backend, count=50)
    first = Batches(images, labels, 8, rng=numpy.random.default_rng(42))
    second = Batches(images, labels, 8, rng=numpy.random.default_rng(42))
    epochs_first = [epoch_labels(first, backend) for _ in range(3)]
    epochs_second = [epoch_labels(second, backend) for _ in range(3)]
    assert epochs_first == epochs_second
    assert epochs_first[0] != epochs_first[1] != epochs_first[2]
    other_seed = Batches(images, labels, 8, rng=numpy.random.default_rng(43))
    assert epoch_labels(other_seed, backend) != epochs_first[0]


def test_restored_rng_state_reproduces_the_next_epoch(backend):
    images, labels = device_data(backend, count=30)
    rng = numpy.random.default_rng(7)
    batches = Batches(images, labels, 7, rng=rng)
    epoch_labels(batches, backend)
    saved = rng.bit_generator.state  # a checkpoint at the epoch boundary
    expected = [epoch_labels(batches, backend) for _ in range(2)]

    resumed_rng = numpy.random.default_rng(999)
    resumed_rng.bit_generator.state = saved
    resumed = Batches(images, labels, 7, rng=resumed_rng)
    assert [epoch_labels(resumed, backend) for _ in range(2)] == expected


def test_permutation_is_drawn_when_the_epoch_starts(backend):
    images, labels = device_data(backend, count=20)
    rng = numpy.random.default_rng(3)
    reference = epoch_labels(Batches(images, labels, 5, rng=numpy.random.default_rng(3)), backend)
    state_before = rng.bit_generator.state
    iterator = iter(Batches(images, labels, 5, rng=rng))
    assert rng.bit_generator.state != state_before  # drawn by iter(), before the first batch
    rng.random(100)  # other use of the generator after the epoch started does not change its order
    assert [backend.to_numpy(y).tolist() for _, y in iterator] == reference


def test_without_shuffle_the_order_is_fixed_and_the_rng_unused(backend):
    images, labels = device_data(backend, count=10)
    rng = numpy.random.default_rng(0)
    state = rng.bit_generator.state
    batches = Batches(images, labels, 4, rng=rng, shuffle=False)
    assert epoch_labels(batches, backend) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert rng.bit_generator.state == state
    assert epoch_labels(Batches(images, labels, 4, rng=None, shuffle=False), backend)[-1] == [8, 9]


def test_batches_stay_on_the_backend_device(backend):
    images, labels = device_data(backend, count=10)
    for shuffle in (True, False):
        for x, y in Batches(images, labels, 4, rng=numpy.random.default_rng(0), shuffle=shuffle):
            assert array_module(x, y) is backend.xp
            assert type(x) is type(images) and type(y) is type(labels)
            assert x.dtype == images.dtype and y.dtype == labels.dtype


def test_works_with_image_tensors(backend):
    images = backend.asarray(numpy.arange(6 * 1 * 2 * 2, dtype=numpy.float64).reshape(6, 1, 2, 2))
    labels = backend.asarray(numpy.arange(6))
    x, y = next(iter(Batches(images, labels, 4, rng=numpy.random.default_rng(0))))
    assert x.shape == (4, 1, 2, 2) and y.shape == (4,)
    numpy.testing.assert_array_equal(backend.to_numpy(x)[:, 0, 0, 0], backend.to_numpy(y) * 4)


def test_one_index_copy_per_epoch_not_per_batch(standin_gpu):
    images, labels = device_data(standin_gpu, count=100)
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    batches = Batches(images, labels, 10, rng=numpy.random.default_rng(0))
    for _ in range(2):
        for _ in batches:
            pass
    tally = counter.since(mark)
    assert tally.by_kind().get("h2d") == 2  # the epoch's order, once per epoch
    assert tally.by_kind()["gather"] == 2 * 10 * 2  # images and labels, 10 batches, 2 epochs
    assert tally.syncs == 0


def test_refuses_bad_arguments(backend):
    images, labels = device_data(backend, count=10)
    with pytest.raises(ValueError, match="differ in length"):
        Batches(images, labels[:9], 4, rng=numpy.random.default_rng(0))
    for bad_size in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            Batches(images, labels, bad_size, rng=numpy.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        Batches(images, labels, 4, rng=None)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        Batches(images, labels, 4, rng=numpy.random.RandomState(0))


def test_epoch_can_start_mid_way_without_changing_the_order():
    images = numpy.arange(10 * 3, dtype=numpy.float32).reshape(10, 3)
    labels = numpy.arange(10)
    full = list(Batches(images, labels, 3, rng=numpy.random.default_rng(5)).epoch())
    resumed = list(Batches(images, labels, 3, rng=numpy.random.default_rng(5)).epoch(start_batch=2))
    assert len(full) == 4 and len(resumed) == 2
    for (index_a, x_a, y_a), (index_b, x_b, y_b) in zip(full[2:], resumed):
        numpy.testing.assert_array_equal(index_a, index_b)
        numpy.testing.assert_array_equal(x_a, x_b)
        numpy.testing.assert_array_equal(y_a, y_b)
        numpy.testing.assert_array_equal(x_a[:, 0] // 3, y_a)  # rows stay paired with their labels


def test_custom_take_and_to_device_are_used():
    calls = {"take": 0, "to_device": 0}

    def take(array, index):
        calls["take"] += 1
        return numpy.take(array, index, axis=0)

    def to_device(order):
        calls["to_device"] += 1
        return numpy.asarray(order)

    images, labels = numpy.zeros((5, 2), dtype=numpy.float32), numpy.arange(5)
    batches = Batches(images, labels, 2, rng=numpy.random.default_rng(0), take=take, to_device=to_device)
    assert sum(len(y) for _, y in batches) == 5
    assert calls == {"take": 6, "to_device": 1}
