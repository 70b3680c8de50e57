"""The engine interface the training loop drives, and the nets engine.

An engine is one implementation (the hand-written nets here, PyTorch in nets/baseline/engine.py) behind the
few calls that training, evaluation, the bench and the profiler make; the loop, the data order, the schedule,
the metrics and the checkpoints are shared. Arrays cross to and from the engine's device only through `backend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy

from backend import Backend, array_module

from nets.nn.reference.models import ReferenceModel
from nets.nn.reference.optim import build_reference_optimizer
from nets.optim import build_optimizer
from nets.train.graph import GraphedStep, eager_because
from nets.train.parallel import DataParallel, default_workers
from nets.train.reference import PlannedReference, ReferenceForTraining

__all__ = ["ArrayBackend", "Engine", "EngineState", "NetsEngine", "engine_for_run", "nets_engine"]


class ArrayBackend(Protocol):
    """The array calls of an engine's backend, how arrays reach its device and come back: backend.Backend's (the
    torch engine's TorchBackend has the same over tensors). name: "cpu" or "gpu"."""

    name: str

    def asarray(self, host, dtype=None): ...
    def to_numpy(self, array): ...
    def upload(self, into, host) -> None: ...
    def synchronize(self) -> None: ...
    def take(self, array, index, axis=None, out=None): ...
    def zeros(self, shape, dtype): ...


@dataclass
class EngineState:
    """What a checkpoint keeps of an engine, on the host. params: name -> numpy array (PyTorch names);
    optimizer_state: the nets optimizer's state_dict() layout (the torch engine converts to it), or None."""

    params: dict
    optimizer_state: dict | None = None


class Engine(Protocol):
    """What the training loop needs of an implementation.

    impl: "nets" or "torch"; backend: its ArrayBackend; model_config: the model's config(); input_shape, dtype:
    what one example is on the device (a predictor, for nets.nn.inference).
    """

    impl: str
    backend: ArrayBackend
    model_config: dict
    input_shape: tuple
    dtype: object

    def batch(self, images, labels, index, moves=None):
        """(x, labels) of the examples `index` (a device vector) of the device dataset, in the step's buffers;
        moves (nets.data.augment.ImageMoves) moves the batch's images in place first."""

    def plan(self, learning_rates, capacity: int = 0) -> None:
        """The learning rate of each coming step, to the device in one copy (capacity: the longest plan to come)."""

    def train_step(self, x, labels) -> None:
        """One step; nothing is read back: the loss and the hits add up on the device."""

    def graphed(self, function, mode: str, note=None):
        """`function` (one full-batch step, everything read on the device) as a nets.train.graph.GraphedStep when
        mode is "on", or "auto" on a GPU; None to run it as it is. ValueError when "on" cannot be honoured."""

    def totals(self) -> tuple[float, int]:
        """(summed loss, hits) since reset_totals(): the one device read of training, every few steps."""

    def reset_totals(self) -> None: ...

    def predict(self, x):
        """Logits (N, classes) of a batch on the device, in evaluation mode (valid until the next predict)."""

    def add_loss_and_hits(self, logits, labels, total) -> None:
        """total (2,) float64 on the device += [summed cross-entropy, correct predictions] of a batch (no read)."""

    def state(self) -> EngineState: ...

    def load_state(self, state: EngineState) -> None:
        """The parameters (and the optimizer state, when there is one) back in place; ValueError when they do
        not fit."""


class NetsEngine:
    """The Engine of a nets model (nets/nn/models.py) and a nets optimizer (nets/optim/) on `backend`: the training
    step itself (forward, loss head, backward, optimizer), shaped for the GPU.

        engine = NetsEngine(model, optimizer, backend)     # workers > 1: split each batch over CPU threads
        x, labels = engine.batch(images, labels, index)    # the batch, gathered into its size's batch_buffers
        engine.train_step(x, labels)                       # no host sync, nothing allocated of its own
        loss_sum, hits = engine.totals()                   # the running totals, read in one host sync

    Every array a step writes has a stable home between steps: the layers' buffers, the loss head's workspace and
    the batch buffers here, one set per batch size. At batch 128 a step launches 38 kernels for the MLP and 56 for
    the CNN, as the strict CuPy stand-in counts them (tests/test_launch_budget.py holds them to their budgets); the
    optimizer is planned ahead (`plan`) so the learning rate is read on the device too, and, when capturable (the
    step a CUDA graph replays), picked at a device index: 2 launches more, 40 and 58.
    """

    impl = "nets"

    def __init__(self, model, optimizer, backend: Backend, workers: int | None = None):
        """workers: CPU threads that split each batch (nets/train/parallel.py); default: the cores, on the CPU only;
        1 runs the model itself."""
        self.model = model
        self.optimizer = optimizer
        self.backend = backend
        self.model_config = model.config()
        self.input_shape, self.dtype = model.input_shape, model.dtype
        if workers is None:
            workers = 1 if backend.is_gpu or model.min_per_worker is None else default_workers()
        self.head = model.loss_head()
        self.parallel = DataParallel(model, workers, model.min_per_worker or 1) if workers > 1 else None
        self._buffers_by_size = {}  # batch size -> batch_buffers
        self._graphed = None

    def graphed(self, function, mode: str, note=None):
        if eager_because(mode, gpu=self.backend.is_gpu, layers=self.model.layer_set) is not None:
            return None
        self.optimizer.capturable = True  # a replay reads its learning rate at a device counter (from the next plan)
        self._graphed = GraphedStep(self.backend, self.optimizer, function, strict=mode == "on", note=note)
        return self._graphed

    def batch_buffers(self, n):
        """The (x, images, labels) buffers a batch of n is gathered into, the same at every step: x is what the model
        takes, images the part of it that holds the pixels (the first Linear's input_with_ones keeps a column of
        ones beside them), labels (n,) int64."""
        buffers = self._buffers_by_size.get(n)
        if buffers is None:
            model, xp = self.model, self.model.backend.xp
            with_ones = model.input_with_ones(n)
            if with_ones is not None:
                x, images = with_ones, with_ones[:, :-1]
            else:
                x = images = xp.empty((n, *model.input_shape), dtype=model.dtype)
            buffers = self._buffers_by_size[n] = (x, images, xp.empty(n, dtype=numpy.int64))
        return buffers

    def batch(self, images, labels, index, moves=None):
        """Gather the examples `index` (a device vector) of `images` and `labels` (device arrays of the whole
        dataset, images already in the model's dtype and input shape) into the batch buffers: two launches; then
        `moves` (an ImageMoves, or None) moves the batch's pixels in place."""
        x, pixels, batch_labels = self.batch_buffers(len(index))
        xp = self.model.backend.xp
        xp.take(images, index, axis=0, out=pixels)
        xp.take(labels, index, axis=0, out=batch_labels)
        if moves is not None:
            moves(pixels if pixels.ndim == 2 else pixels.reshape(len(pixels), -1), index)
        return x, batch_labels

    def plan(self, learning_rates, capacity: int = 0) -> None:
        table = self.optimizer.coefficient_table
        self.optimizer.plan(learning_rates, capacity)
        if self._graphed is not None and self.optimizer.coefficient_table is not table:
            self._graphed.invalidate()  # the graph reads the table where it was

    def train_step(self, x, labels) -> None:
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

    def predict(self, x):
        """Logits (N, classes) in evaluation mode (split over CPU threads when it pays): a buffer the next prediction
        of as many examples overwrites."""
        if self.parallel is not None and self.parallel.splits(len(x)):
            return self.parallel.forward(x)
        return self.model.predict_step(x)

    def add_loss_and_hits(self, logits, labels, total) -> None:
        """total (2,) float64 on the device += [summed cross-entropy, correct predictions] of a batch's logits."""
        xp = array_module(logits, labels)
        scores = logits.astype(numpy.float64)
        shifted = scores - scores.max(axis=1, keepdims=True)
        picked = xp.take_along_axis(shifted, labels.reshape(-1, 1), axis=1)
        total[0] += (xp.log(xp.exp(shifted).sum(axis=1)) - picked[:, 0]).sum()
        total[1] += (logits.argmax(axis=1) == labels).sum()

    def state(self) -> EngineState:
        return EngineState(self.model.state_dict(), self.optimizer.state_dict())

    def load_state(self, state: EngineState) -> None:
        self.model.load_state_dict(state.params)
        if state.optimizer_state is not None:
            self.optimizer.load_state_dict(state.optimizer_state)


def nets_engine(model, optimizer: str, *, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                workers: int | None = None) -> NetsEngine:
    """The NetsEngine of `model` and the optimizer named "sgd" or "adam": the flat one of nets/optim for a fast model
    (nets/nn/models.py), the reference one for a reference model (nets/nn/reference/), through its adapters
    (nets/train/reference.py)."""
    if isinstance(model, ReferenceModel):
        reference = build_reference_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum,
                                              weight_decay=weight_decay)
        return NetsEngine(ReferenceForTraining(model), PlannedReference(reference, model.gradients), model.backend,
                          workers=1)
    flat = build_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    return NetsEngine(model, flat, model.backend, workers=workers)


def engine_for_run(settings, model) -> NetsEngine:
    """The nets engine of a training run (nets/train/run.py): `model` with the optimizer that
    settings.hyperparameters names."""
    hyperparameters = settings.hyperparameters
    return nets_engine(model, hyperparameters.optimizer, lr=hyperparameters.lr, momentum=hyperparameters.momentum,
                       weight_decay=hyperparameters.weight_decay)
