"""Shuffled minibatches of arrays that already live on the device.

    x, y = backend.asarray(to_model_input(images, (784,))), backend.asarray(to_labels(labels))   # once per run
    batches = Batches(x, y, batch_size=128, rng=backend.rng)
    for epoch in range(epochs):
        for x_batch, y_batch in batches:       # one permutation drawn here, per epoch
            ...

The data never leaves the device: each epoch draws one permutation on the host with the seeded
numpy Generator, copies that index vector to the device once, and gathers each batch there with
`xp.take(..., axis=0)`. The order depends only on the generator's state when iteration starts, so a
run resumed from a checkpoint taken at an epoch boundary (generator state included) sees the same
batches as the uninterrupted run.
"""

from __future__ import annotations

import numpy

from backend import array_module

__all__ = ["Batches", "EpochOrder"]


class Batches:
    """An iterable over (x, y) minibatches, reshuffled every epoch; the last, partial batch is kept.

    images: (N, ...) array on the device (or host); labels: (N,) array on the same device.
    batch_size: examples per batch; the last batch holds the remaining N % batch_size when nonzero.
    rng: a host numpy.random.Generator (e.g. Backend.rng); may be None when shuffle=False.
    shuffle: False yields the examples in order (as slices, without gathering).
    take(array, index), to_device(host_vector): how to gather and how to move the index vector; by default
        `xp.take(..., axis=0)` and `xp.asarray` of the inputs' array module (fit passes its engine's io calls).
    gather(images, labels, index) -> (x, y): gathers a whole batch instead of two `take`s (an engine
        gathers into its training step's stable homes, see nets/train/step.py).
    Yields x: (B, ...) and y: (B,) on the same device as the inputs, B <= batch_size.
    """

    def __init__(self, images, labels, batch_size: int, *, rng: numpy.random.Generator | None, shuffle=True,
                 take=None, to_device=None, gather=None):
        if len(images) != len(labels):
            raise ValueError(
                f"images and labels differ in length ({len(images)} vs {len(labels)}); pass matching arrays."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, numpy.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if shuffle and not isinstance(rng, numpy.random.Generator):
            raise TypeError(
                "rng must be a numpy.random.Generator (such as Backend.rng) when shuffle=True, "
                f"got {type(rng).__name__}."
            )
        if take is None or to_device is None:
            xp = array_module(images, labels)  # also refuses host and device arrays mixed
            take = take or (lambda array, index: xp.take(array, index, axis=0))
            to_device = to_device or xp.asarray
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.rng = rng
        self.shuffle = shuffle
        self._take = take
        self._to_device = to_device
        self._gather = gather or (lambda images, labels, index: (take(images, index), take(labels, index)))

    @property
    def num_examples(self) -> int:
        return len(self.images)

    def __len__(self) -> int:
        """The number of batches per epoch, counting the partial last one."""
        return -(-self.num_examples // self.batch_size)

    def __iter__(self):
        """Start an epoch: draw its permutation now (not at the first batch), then yield its (x, y) batches."""
        return ((x, y) for _, x, y in self.epoch())

    def epoch(self, start_batch: int = 0, *, start_image: int | None = None):
        """Start an epoch now (drawing its permutation) and return an iterator of (index, x, y) batches.

        index: the positions of the batch's examples (a device vector; a slice when shuffle=False), for
        gathering per-example data drawn alongside (e.g. augmentation flags).
        start_batch: skip the epoch's first batches without gathering them (a run resumed mid-epoch).
        start_image: skip the epoch's first images instead (a run resumed mid-epoch with another batch size); the
            batches then start there, each of batch_size images but the last.
        """
        first = start_batch * self.batch_size if start_image is None else start_image
        if not self.shuffle:
            return self._in_order(first)
        order = self.rng.permutation(self.num_examples)  # on the host: the generator state stays plain data
        return self._gathered(self._to_device(order), first)  # one small host-to-device copy per epoch

    def _in_order(self, first):
        for start in range(first, self.num_examples, self.batch_size):
            index = slice(start, start + self.batch_size)
            yield index, self.images[index], self.labels[index]

    def _gathered(self, order, first):
        for start in range(first, self.num_examples, self.batch_size):
            index = order[start : start + self.batch_size]
            yield (index, *self._gather(self.images, self.labels, index))


class EpochOrder:
    """An epoch's order of examples on the device, rewritten in place every epoch, and a device counter that picks
    each full batch's rows from it: what a training step captured as a CUDA graph needs, since a replay reads the
    same memory every time (a host-side slice of the order would be a new view, at a new address, per step).

        order = EpochOrder(io, count=60000, batch_size=128)  # io: an engine's array I/O (backend or torch)
        order.start(rng.permutation(60000), start_image=0)  # the epoch: one copy into the same array, counter set
        rows = order.next_rows()        # full batches: the counter's row of the order, 2 launches; counter += 1
        rows = order.rows_from(59904)   # the partial last batch (count % batch_size examples): a view

    rows: (batch_size,) int64 on the device, in a home kept for the whole run (next_rows) or a view (rows_from).
    """

    def __init__(self, io, count: int, batch_size: int):
        self._io = io
        self.count, self.batch_size = int(count), int(batch_size)
        self.full_batches = self.count // self.batch_size
        self.order = io.zeros(self.count, "int64")
        self._by_batch = self.order[: self.full_batches * self.batch_size].reshape(self.full_batches, self.batch_size)
        self._counter = io.zeros(1, "int64")
        self._rows = io.zeros((1, self.batch_size), "int64")

    def __len__(self) -> int:
        """Batches per epoch, the partial last one included."""
        return -(-self.count // self.batch_size)

    def start(self, permutation, start_image: int = 0) -> None:
        """A new epoch: `permutation` (count,) host integers into the device order; next_rows starts at image
        `start_image` (a multiple of batch_size: a run resumed mid-epoch)."""
        self._io.upload(self.order, permutation)
        self._counter[...] = int(start_image) // self.batch_size

    def next_rows(self):
        """The next full batch's example indices (batch_size,), picked on the device; the counter moves on."""
        self._io.take(self._by_batch, self._counter, axis=0, out=self._rows)
        self._counter += 1
        return self._rows[0]

    def rows_from(self, image: int):
        """The example indices of the batch that starts at image `image` of the epoch: a view of the order (the
        partial last batch, or a batch off the grid of full batches)."""
        return self.order[image:image + self.batch_size]
