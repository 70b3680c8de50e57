"""An epoch's order of examples on the device, and each batch's rows picked from it: how the training loop
(nets/train/loop.py) batches data that lives on the device for the whole run.

Each epoch draws one permutation on the host with the seeded numpy Generator and copies it into the same device
array, once per epoch; each batch's rows are then picked on the device, and the loop gathers the batch with them
(`engine.batch`). The order depends only on the generator's state when the epoch starts, so a run resumed from a
checkpoint (the generator state included) sees the same batches as the uninterrupted run.
"""

from __future__ import annotations

from typing import NamedTuple

from nets.validate import whole

__all__ = ["Batch", "EpochOrder"]


class Batch(NamedTuple):
    """One batch of an epoch: its first image in the epoch's order, how many images it holds, whether it is a full
    batch on the grid of batch_size (its rows come from the device counter, as a CUDA graph replays them), and
    whether it is the epoch's last."""

    start: int
    size: int
    full: bool
    last: bool


class EpochOrder:
    """An epoch's order of examples on the device, rewritten in place every epoch, and a device counter that picks
    each full batch's rows from it: what a training step captured as a CUDA graph needs, since a replay reads the
    same memory every time (a host-side slice of the order would be a new view, at a new address, per step).

        order = EpochOrder(backend, count=60000, batch_size=128)  # an engine's backend: a Backend, or TorchBackend
        order.start(rng.permutation(60000), start_image=0)  # the epoch: one copy into the same array, counter set
        for batch in order.batches():   # Batch(start, size, full, last), from the start image to the epoch's end
            rows = order.rows(batch)    # full: the counter's row of the order (next_rows, 2 launches); else a view

    rows: (batch_size,) int64 on the device, in a buffer kept for the whole run (next_rows) or a view (rows_from).
    """

    def __init__(self, backend, count: int, batch_size: int):
        self._backend = backend
        self.count = whole(count, "count", 0)
        # a batch size over the images is one batch of them all: the buffers hold what there is to hold
        self.batch_size = max(1, min(whole(batch_size, "batch_size"), self.count))
        self.full_batches = self.count // self.batch_size
        self.start_image = 0
        self.order = backend.zeros(self.count, "int64")
        self._by_batch = self.order[: self.full_batches * self.batch_size].reshape(self.full_batches, self.batch_size)
        self._counter = backend.zeros(1, "int64")
        self._rows = backend.zeros((1, self.batch_size), "int64")

    def __len__(self) -> int:
        """Batches per epoch, the partial last one included."""
        return -(-self.count // self.batch_size)

    def start(self, permutation, start_image: int = 0) -> None:
        """A new epoch: `permutation` (count,) host integers into the device order; next_rows starts at image
        `start_image` (a run resumed mid-epoch; off the grid of full batches, the loop takes rows_from instead)."""
        if len(permutation) != self.count:
            raise ValueError(f"the epoch's order has {len(permutation)} entries for {self.count} examples.")
        self._backend.upload(self.order, permutation)
        self.start_image = whole(start_image, "start_image", 0)
        self._counter[...] = self.start_image // self.batch_size

    def batches(self):
        """Each batch left in the epoch, from the start image on: Batch(start, size, full, last). A run resumed with
        another batch size starts off the grid of full batches, so its whole epoch takes views (rows_from)."""
        on_the_grid = self.start_image % self.batch_size == 0
        image = self.start_image
        while image < self.count:
            size = min(self.batch_size, self.count - image)
            yield Batch(image, size, on_the_grid and size == self.batch_size, image + size == self.count)
            image += size

    def rows(self, batch: Batch):
        """The example indices of `batch` on the device: a full batch's at the counter (next_rows), another's a
        view of the order (rows_from)."""
        return self.next_rows() if batch.full else self.rows_from(batch.start)

    def steps_left(self) -> int:
        """Batches from the start image to the epoch's end."""
        return -(-(self.count - self.start_image) // self.batch_size)

    def next_rows(self):
        """The next full batch's example indices (batch_size,), picked on the device; the counter moves on."""
        self._backend.take(self._by_batch, self._counter, axis=0, out=self._rows)
        self._counter += 1
        return self._rows[0]

    def rows_from(self, image: int):
        """The example indices of the batch that starts at image `image` of the epoch: a view of the order (the
        partial last batch, or a batch off the grid of full batches)."""
        return self.order[image:image + self.batch_size]
