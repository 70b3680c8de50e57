"""The nets engine: what the training loop needs from a hand-written model and its optimizer.

An engine hides which library computes (nets here, PyTorch in nets/baseline/engine.py) behind a few calls:
    to_device(host_array) / index_vector(order)   once per run / once per epoch
    gather(images, labels, index) -> (x, labels)  a batch, gathered on the device
    load_augmentation(maps) / augment(x, moves, index)   pixel maps to the device once; move x's images in place
    plan(learning_rates)                          the lr of each coming step (to the device once)
    train_step(x, labels)                         nothing is read back; loss and hits add up on the device
    totals() -> (loss_sum, hits)                  the only device -> host read of training, every few steps
    reset_totals(), predict(x), count_hits(x, labels), take(array, index)
    to_host(scalar) -> float, to_numpy(array), synchronize()
    model_config, parameters_numpy(), optimizer_state(), load_state(params, optimizer_state)   for checkpoints
"""

from __future__ import annotations

import numpy

from backend import Backend

from nets.train.parallel import default_workers
from nets.train.step import TrainStep


class NetsEngine:
    """Trains a nets model (nets/nn/models.py) with a nets optimizer (nets/optim/) on `backend`."""

    impl = "nets"

    def __init__(self, model, optimizer, backend: Backend, workers: int | None = None):
        """workers: CPU threads that split each batch (nets/train/parallel.py); default: the cores, on the CPU only."""
        self.model = model
        self.optimizer = optimizer
        self.backend = backend
        self.xp = backend.xp
        self.model_config = model.config()
        if workers is None:
            workers = 1 if backend.is_gpu or model.min_per_worker is None else default_workers()
        self.step = TrainStep(model, optimizer, workers)

    def to_device(self, host_array, dtype=None):
        return self.backend.asarray(host_array, dtype=dtype)

    def index_vector(self, order):
        return self.backend.asarray(order)

    def take(self, array, index):
        return self.xp.take(array, index, axis=0)

    def gather(self, images, labels, index):
        """The batch `index` of the dataset's images and labels, in the training step's homes (2 launches)."""
        return self.step.gather(images, labels, index)

    def load_augmentation(self, maps) -> None:
        """The pixel maps of nets.data.augment (T, P) int64, to the device once per run."""
        self._augment_maps = self.backend.asarray(maps)
        self._augment_homes = {}

    def augment(self, x, moves, index):
        """Move each image of x (as `gather` returned it for the batch `index`) by its pixel map, in place.

        moves: (N,) the epoch's map of every training image (nets.data.augment's draw, on the device).
        Five launches, into homes kept per batch size: the batch's maps, their offsets into a workspace,
        the pixels into that workspace (whose extra column stays 0, the background shifted in), one gather
        back into x's home."""
        xp, maps = self.xp, self._augment_maps
        pixels = self.step.images_of(x)
        n, count = pixels.shape[0], maps.shape[1]
        if pixels.shape != (n, count):  # the CNN's (n, 1, H, W) home is contiguous: (n, P) is a view of it
            pixels = pixels.reshape(n, count)
        homes = self._augment_homes.get(n)
        if homes is None:
            work = xp.zeros((n, count + 1), dtype=pixels.dtype)
            rows = xp.arange(n, dtype=numpy.int64)[:, None] * (count + 1)
            homes = self._augment_homes[n] = (work, rows, xp.empty(n, dtype=numpy.int64),
                                              xp.empty((n, count), dtype=numpy.int64))
        work, rows, chosen, source = homes
        xp.take(moves, index, axis=0, out=chosen)
        xp.take(maps, chosen, axis=0, out=source)
        xp.add(source, rows, out=source)
        work[:, :count] = pixels
        xp.take(work.reshape(-1), source, out=pixels)
        return x

    def plan(self, learning_rates) -> None:
        self.optimizer.plan(learning_rates)

    def train_step(self, x, labels) -> None:
        self.step(x, labels)

    def totals(self) -> tuple[float, int]:
        return self.step.totals()

    def reset_totals(self) -> None:
        self.step.reset_totals()

    def forward(self, x):
        """Logits (N, classes) in evaluation mode (split over CPU threads when it pays)."""
        parallel = self.step.parallel
        if parallel is not None and parallel.splits(len(x)):
            return parallel.forward(x)
        return self.model.forward(x, train=False)

    def predict(self, x):
        """Predicted classes (N,) on the device, in evaluation mode."""
        return self.forward(x).argmax(axis=1)

    def count_hits(self, x, labels):
        return (self.predict(x) == labels).sum()

    def to_host(self, scalar) -> float:
        return float(scalar)

    def to_numpy(self, array):
        return self.backend.to_numpy(array)

    def set_lr(self, lr: float) -> None:
        """The lr of steps outside a plan."""
        self.optimizer.lr = lr

    def synchronize(self) -> None:
        self.backend.synchronize()

    def parameters_numpy(self) -> dict:
        """Host copies of the parameters under their PyTorch names."""
        return self.model.state_dict()

    def optimizer_state(self) -> dict:
        return self.optimizer.state_dict()

    def load_state(self, params: dict, optimizer_state: dict | None) -> None:
        self.model.load_state_dict(params)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
