"""The two implementations under test, each with one model, Adam and one synthetic batch on the device."""

from __future__ import annotations

import numpy

from nets.bench import NUM_CLASSES

PLANNED_STEPS = 10_000  # learning rates put on the device at a time


def make_batch(input_shape, batch_size: int, seed: int = 0):
    """Synthetic MNIST-shaped data: pixels in [0, 1) and labels 0..9."""
    rng = numpy.random.default_rng(seed)
    x = rng.random((batch_size, *input_shape), dtype=numpy.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size).astype(numpy.int64)
    return x, labels


class NetsRunner:
    """The nets model with Adam, and one synthetic batch on the backend's device."""

    impl = "nets"

    def __init__(self, model_name: str, backend, x_host: numpy.ndarray, labels_host: numpy.ndarray):
        from nets.train.engine import NetsEngine
        from nets.nn.models import build_model
        from nets.optim import Adam

        self.backend = backend
        self.settle = not backend.is_gpu  # pause before a timed sample only on the CPU (timing.py)
        self.model = build_model(model_name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
        # the engine train.py uses, so the step timed here is the training step (threads included)
        self.engine = NetsEngine(self.model, Adam(self.model.parameters(), lr=1e-3), backend)
        self.images = backend.asarray(x_host, dtype="float32")
        # the batch in the training step's homes, where fit() gathers it (the MLP's: the input slot)
        self.x, self.labels = self.engine.step.load(self.images, backend.asarray(labels_host))
        self._planned_until = 0

    def train_step(self) -> None:
        optimizer = self.engine.optimizer
        if optimizer.step_count >= self._planned_until:  # the learning rate on the device, as in fit()
            self.engine.plan([1e-3] * PLANNED_STEPS)
            self._planned_until = optimizer.step_count + PLANNED_STEPS
        self.engine.train_step(self.x, self.labels)

    def infer_step(self) -> None:
        self.engine.forward(self.images)

    def begin(self, phase: str) -> None:
        pass

    def synchronize(self) -> None:
        self.backend.synchronize()


class TorchRunner:
    """The same architecture in PyTorch eager (torch.optim.Adam), on "cpu" or "cuda"."""

    impl = "torch"

    def __init__(self, model_name, torch, device, x_host, labels_host, channels_last=False):
        from nets.baseline.models import build_torch_model

        self.torch = torch
        self.device = device
        self.settle = device == "cpu"
        self.functional = torch.nn.functional
        self.model = build_torch_model(model_name).to(device)
        self.x = torch.from_numpy(numpy.ascontiguousarray(x_host)).to(device)
        self.labels = torch.from_numpy(labels_host.astype(numpy.int64)).to(device)
        if channels_last:
            self.impl = "torch_channels_last"
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def begin(self, phase: str) -> None:
        self.model.train(phase == "train")

    def train_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.functional.cross_entropy(self.model(self.x), self.labels)
        loss.backward()
        self.optimizer.step()

    def infer_step(self) -> None:
        with self.torch.inference_mode():
            self.model(self.x)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
