"""An epoch's order of examples on the device, and each batch's rows picked from it: how the training loop
(nets/train/loop.py) batches data that lives on the device for the whole run.

Each epoch draws one permutation on the host with the seeded numpy Generator and copies it into the same device
array, once per epoch; each batch's rows are then picked on the device, and the loop gathers the batch with them
(`engine.batch`). The order depends only on the generator's state when the epoch starts, so a run resumed from a
checkpoint (the generator state included) sees the same batches as the uninterrupted run.
"""

from __future__ import annotations

from nets.validate import whole

__all__ = ["EpochOrder"]


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
        self.count, self.batch_size = whole(count, "count", 0), whole(batch_size, "batch_size")
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
        `start_image` (a run resumed mid-epoch; off the grid of full batches, the loop takes rows_from instead)."""
        if len(permutation) != self.count:
            raise ValueError(f"the epoch's order has {len(permutation)} entries for {self.count} examples.")
        self._io.upload(self.order, permutation)
        self._counter[...] = whole(start_image, "start_image", 0) // self.batch_size

    def next_rows(self):
        """The next full batch's example indices (batch_size,), picked on the device; the counter moves on."""
        self._io.take(self._by_batch, self._counter, axis=0, out=self._rows)
        self._counter += 1
        return self._rows[0]

    def rows_from(self, image: int):
        """The example indices of the batch that starts at image `image` of the epoch: a view of the order (the
        partial last batch, or a batch off the grid of full batches)."""
        return self.order[image:image + self.batch_size]
