"""EpochOrder: every example once per epoch, a kept partial batch, the drawn order, a resume mid-epoch, rows picked
on the device with one copy per epoch, a stable home for a captured step."""

import numpy
import pytest

from backend import array_module
from nets.data.batches import EpochOrder


def epoch_rows(order, backend, permutation, start_image=0):
    """The rows of each batch of one epoch, as fit() takes them: full batches at the counter, then a view."""
    order.start(permutation, start_image=start_image)
    batches, image = [], start_image
    while image < order.count:
        full = image + order.batch_size <= order.count
        rows = order.next_rows() if full else order.rows_from(image)
        batches.append(backend.to_numpy(rows).tolist())
        image += len(batches[-1])
    return batches


def test_every_example_once_per_epoch_with_a_partial_last_batch(backend):
    order = EpochOrder(backend, 10, 4)
    assert len(order) == 3 and order.full_batches == 2
    rng = numpy.random.default_rng(0)
    for _ in range(3):
        permutation = rng.permutation(10)
        batches = epoch_rows(order, backend, permutation)
        assert [len(rows) for rows in batches] == [4, 4, 2]
        assert sum(batches, []) == permutation.tolist()  # the drawn order, batch after batch


@pytest.mark.parametrize("count, batch_size, expected", [(12, 4, 3), (13, 4, 4), (3, 10, 1), (0, 4, 0), (1, 1, 1)])
def test_len_counts_the_partial_batch(backend, count, batch_size, expected):
    order = EpochOrder(backend, count, batch_size)
    assert len(order) == expected
    assert len(epoch_rows(order, backend, numpy.random.default_rng(0).permutation(count))) == expected


def test_an_epoch_resumed_mid_way_goes_on_with_the_same_rows(backend):
    permutation = numpy.random.default_rng(5).permutation(10)
    full = epoch_rows(EpochOrder(backend, 10, 3), backend, permutation)
    assert epoch_rows(EpochOrder(backend, 10, 3), backend, permutation, start_image=6) == full[2:]
    # off the grid of full batches (a resume with another batch size): the rest of the order, from that image
    order = EpochOrder(backend, 10, 3)
    order.start(permutation, start_image=0)
    assert backend.to_numpy(order.rows_from(5)).tolist() == permutation[5:8].tolist()


def test_rows_stay_on_the_device_in_one_buffer(backend):
    order = EpochOrder(backend, 10, 4)
    order.start(numpy.arange(10))
    first = order.next_rows()
    second = order.next_rows()
    assert array_module(first, second) is backend.xp
    assert first.dtype == numpy.int64 and first.shape == (4,)
    # a captured step reads the same memory at every replay: next_rows writes into one buffer
    assert first.data.ptr == second.data.ptr if backend.is_gpu else numpy.shares_memory(first, second)
    assert backend.to_numpy(second).tolist() == [4, 5, 6, 7]


def test_one_copy_per_epoch_and_two_launches_per_batch(standin_gpu):
    order = EpochOrder(standin_gpu, 100, 10)
    counter = standin_gpu.xp.counter
    rng = numpy.random.default_rng(0)
    order.start(rng.permutation(100))
    mark = counter.mark()
    for _ in range(2):
        order.start(rng.permutation(100))
        for _ in range(10):
            order.next_rows()
    tally = counter.since(mark)
    assert tally.by_kind().get("h2d") == 2  # the epoch's order, once per epoch
    assert tally.launches == 2 * 10 * 2  # each batch: a gather and the counter's += 1
    assert tally.syncs == 0 and tally.allocations == 0


def test_refuses_bad_arguments(backend):
    for bad_size in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
            EpochOrder(backend, 10, bad_size)
    with pytest.raises(ValueError, match="count must be a whole number >= 0"):
        EpochOrder(backend, -1, 4)
    order = EpochOrder(backend, 10, 4)
    with pytest.raises(ValueError, match="10 examples"):
        order.start(numpy.arange(9))
    with pytest.raises(ValueError, match="start_image must be a whole number >= 0"):
        order.start(numpy.arange(10), start_image=-4)
