"""One training step of a nets model, shaped for the GPU: forward, loss head, backward, optimizer.

    step = TrainStep(model, optimizer)            # workers > 1: split each batch over CPU threads
    x, labels = step.gather(images, labels, index)   # the batch, gathered into the step's homes for its size
    step(x, labels)                               # no host sync, nothing allocated of its own
    loss_sum, hits = step.totals()                # the running totals, read in one host sync
    step.reset_totals()

Every array the step writes has a stable home between steps: the layers' buffers, the loss head's
workspace and the input homes here, one set per batch size. At batch 128 a step launches 38 kernels for
the MLP and 57 for the CNN, as the strict CuPy stand-in counts them (tests/test_launch_budget.py holds
them to their budgets); the optimizer is planned ahead (`Optimizer.plan`) so the learning rate is read on
the device too.
"""

from __future__ import annotations

import numpy

from nets.train.parallel import DataParallel

__all__ = ["TrainStep"]


class TrainStep:
    """A nets model, its optimizer and its loss head, as one training step.

    workers: CPU threads that split each batch (nets/train/parallel.py); 1 runs the model itself.
    """

    def __init__(self, model, optimizer, workers: int = 1):
        self.model = model
        self.optimizer = optimizer
        self.head = model.loss_head()
        self.parallel = DataParallel(model, workers, model.min_per_worker or 1) if workers > 1 else None
        self._homes = {}

    def homes(self, n):
        """(x, images, labels) homes for a batch of n: x is what the model takes, images the part of it that
        holds the pixels (the first Linear's input slot keeps a column of ones beside them), labels (n,) int64."""
        homes = self._homes.get(n)
        if homes is None:
            model, xp = self.model, self.model.backend.xp
            slot = model.input_slot(n)
            if slot is not None:
                x, images = slot, slot[:, :-1]
            else:
                x = images = xp.empty((n, *model.input_shape), dtype=model.dtype)
            homes = self._homes[n] = (x, images, xp.empty(n, dtype=numpy.int64))
        return homes

    def gather(self, images, labels, index):
        """Gather the examples `index` (a device vector) of `images` and `labels` (device arrays of the whole
        dataset, images already in the model's dtype and input shape) into the homes: two launches."""
        x, image_home, label_home = self.homes(len(index))
        xp = self.model.backend.xp
        xp.take(images, index, axis=0, out=image_home)
        xp.take(labels, index, axis=0, out=label_home)
        return x, label_home

    def images_of(self, x):
        """The pixel part of a model input made by `gather` (x itself unless it is a slot)."""
        return x[:, :-1] if x.shape[1:] != tuple(self.model.input_shape) else x

    def __call__(self, x, labels) -> None:
        """Forward, loss, backward and optimizer step on one batch; the loss and hits go to the totals."""
        if self.parallel is not None and self.parallel.splits(len(labels)):
            self.parallel.gradients(x, labels)
        else:
            logits = self.model.forward_step(x, train=True)
            self.model.backward_step(self.head(logits, labels))
        self.optimizer.step()

    def totals(self) -> tuple[float, int]:
        """(sum of per-sample losses, correct predictions) since the last reset: one host sync per head."""
        loss, hits = self.head.totals()
        if self.parallel is not None:
            more_loss, more_hits = self.parallel.totals()
            loss, hits = loss + more_loss, hits + more_hits
        return loss, hits

    def reset_totals(self) -> None:
        self.head.reset()
        if self.parallel is not None:
            self.parallel.reset_totals()
