"""The engine interface the training loop drives, and the nets engine.

An engine is one implementation (the hand-written nets here, PyTorch in nets/baseline/engine.py) behind the
few calls that training, evaluation, the bench and the profiler make; the loop, the data order, the schedule,
the metrics and the checkpoints are shared. Arrays cross to and from the engine's device only through `io`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backend import Backend

from nets.nn.reference.optim import build_reference_optimizer
from nets.optim import build_optimizer
from nets.train.graph import GRAPH_MODES, GraphedStep
from nets.train.parallel import default_workers
from nets.train.step import TrainStep
__all__ = ["ArrayIO", "Engine", "EngineState", "NetsEngine", "engine_for_run"]


class ArrayIO(Protocol):
    """How arrays reach an engine's device and come back: backend.Backend's calls (the torch engine has the same
    over tensors). name: "cpu" or "gpu"."""

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

    impl: "nets" or "torch"; io: its ArrayIO; model_config: the model's config(); input_shape, dtype: what one
    example is on the device (a predictor, for nets.nn.inference).
    """

    impl: str
    io: ArrayIO
    model_config: dict
    input_shape: tuple
    dtype: object

    def batch(self, images, labels, index, mover=None):
        """(x, labels) of the examples `index` (a device vector) of the device dataset, in the step's homes;
        mover (nets.data.augment.PixelMover) moves the batch's images in place first."""

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
        """Logits (N, classes) of a batch on the device, in evaluation mode."""

    def state(self) -> EngineState: ...

    def load_state(self, state: EngineState) -> None:
        """The parameters (and the optimizer state, when there is one) back in place; ValueError when they do
        not fit."""


class NetsEngine:
    """The Engine of a nets model (nets/nn/models.py) and a nets optimizer (nets/optim/) on `backend`."""

    impl = "nets"

    def __init__(self, model, optimizer, backend: Backend, workers: int | None = None):
        """workers: CPU threads that split each batch (nets/train/parallel.py); default: the cores, on the CPU only."""
        self.model = model
        self.optimizer = optimizer
        self.io = backend
        self.model_config = model.config()
        self.input_shape, self.dtype = model.input_shape, model.dtype
        if workers is None:
            workers = 1 if backend.is_gpu or model.min_per_worker is None else default_workers()
        self.step = TrainStep(model, optimizer, workers)
        self._graphed = None

    def graphed(self, function, mode: str, note=None):
        if mode not in GRAPH_MODES:
            raise ValueError(f"unknown graph mode {mode!r}; choose one of {', '.join(GRAPH_MODES)}.")
        eager = self.model.strategy == "reference"  # the reference layers allocate what they return: no graph
        if mode == "off" or (mode == "auto" and (eager or not self.io.is_gpu)):
            return None
        if eager:
            raise ValueError("the reference layers run every step eagerly; use --graph auto or off with them.")
        if not self.io.is_gpu:
            raise ValueError("a CUDA graph needs the GPU (--device gpu); NumPy runs every step as it is.")
        self.optimizer.capturable = True  # a replay reads its learning rate at a device counter (from the next plan)
        self._graphed = GraphedStep(self.io, self.optimizer, function, strict=mode == "on", note=note)
        return self._graphed

    def batch(self, images, labels, index, mover=None):
        x, y = self.step.gather(images, labels, index)  # 2 launches
        if mover is not None:
            pixels = self.step.images_of(x)  # the MLP's input slot keeps a column of ones beside the pixels
            mover(pixels if pixels.ndim == 2 else pixels.reshape(len(pixels), -1), index)
        return x, y

    def plan(self, learning_rates, capacity: int = 0) -> None:
        table = self.optimizer.coefficient_table
        self.optimizer.plan(learning_rates, capacity)
        if self._graphed is not None and self.optimizer.coefficient_table is not table:
            self._graphed.invalidate()  # the graph reads the table where it was

    def train_step(self, x, labels) -> None:
        self.step(x, labels)

    def totals(self) -> tuple[float, int]:
        return self.step.totals()

    def reset_totals(self) -> None:
        self.step.reset_totals()

    def predict(self, x):
        """Logits (N, classes) in evaluation mode (split over CPU threads when it pays)."""
        parallel = self.step.parallel
        if parallel is not None and parallel.splits(len(x)):
            return parallel.forward(x)
        return self.model.forward(x, train=False)

    def state(self) -> EngineState:
        return EngineState(self.model.state_dict(), self.optimizer.state_dict())

    def load_state(self, state: EngineState) -> None:
        self.model.load_state_dict(state.params)
        if state.optimizer_state is not None:
            self.optimizer.load_state_dict(state.optimizer_state)


def engine_for_run(settings, model) -> NetsEngine:
    """The nets engine of a training run (nets/train/run.py): `model` with the optimizer settings.hyper names (one
    tensor at a time, nets/nn/reference/optim.py, for a reference model)."""
    hyper = settings.hyper
    if model.strategy == "reference":
        optimizer = build_reference_optimizer(hyper.optimizer, model.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                                              weight_decay=hyper.weight_decay, gradients=model.gradients)
    else:
        optimizer = build_optimizer(hyper.optimizer, model.parameters(), lr=hyper.lr, momentum=hyper.momentum,
                                    weight_decay=hyper.weight_decay)
    return NetsEngine(model, optimizer, model.backend)
