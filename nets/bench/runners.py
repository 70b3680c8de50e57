"""What the bench times: one engine (the nets or the PyTorch one train.py trains with), Adam, and one synthetic
batch on its device, in the step's homes; on a GPU also each training step captured as a CUDA graph (the nets'
own capture, and torch.cuda.graphs)."""

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


class Runner:
    """An engine and one batch: train_step() is the training step fit() runs (learning rate planned on the device;
    the nets add their loss and hits up in their loss head, the torch engine is built without that, a bare eager
    step), infer_step() a prediction of the batch. impl names the row ("nets", "torch", ...)."""

    def __init__(self, engine, x_host: numpy.ndarray, labels_host: numpy.ndarray, impl: str | None = None):
        self.engine = engine
        self.impl = impl or engine.impl
        backend = engine.backend
        self.settle = backend.name == "cpu"  # pause before a timed sample only on the CPU (timing.py)
        self.images = backend.asarray(x_host)
        labels = backend.asarray(labels_host)
        self.x, self.labels = engine.batch(self.images, labels, backend.asarray(numpy.arange(len(labels_host))))
        self._planned = 0
        self._step = lambda: engine.train_step(self.x, self.labels)

    def train_step(self) -> None:
        if self._planned == 0:  # the learning rate on the device, as in fit()
            self.engine.plan([1e-3] * PLANNED_STEPS)
            self._planned = PLANNED_STEPS
        self._planned -= 1
        self._step()

    def infer_step(self) -> None:
        self.engine.predict(self.images)

    def synchronize(self) -> None:
        self.engine.backend.synchronize()


class CapturedRunner(Runner):
    """A nets Runner whose training step is captured as a CUDA graph after one eager step and replayed
    (nets/train/graph.py), everything on the graph's stream: the row "nets_graph"."""

    def __init__(self, engine, x_host, labels_host, impl="nets_graph"):
        super().__init__(engine, x_host, labels_host, impl=impl)
        engine.backend.synchronize()  # the batch is on the device before the graph's stream reads it
        self._step = engine.graphed(self._step, "on")
        self._stream = self._step.stream

    def train_step(self) -> None:
        with self._stream:
            super().train_step()

    def infer_step(self) -> None:
        with self._stream:
            super().infer_step()

    def synchronize(self) -> None:
        self._stream.synchronize()


class TorchGraphRunner:
    """PyTorch's training step captured with torch.cuda.graphs and replayed: PyTorch's whole-network capture recipe
    (warm-up on a side stream, grads set to None, then forward, backward and a capturable Adam step captured), the
    higher anchor on a GPU: the row "torch_graph". Inference runs eagerly, as in the torch row."""

    impl = "torch_graph"
    settle = False

    def __init__(self, model_name: str, x_host, labels_host):
        from nets.baseline.engine import TorchEngine

        engine = TorchEngine({"name": model_name}, device="gpu", optimizer=None, count_totals=False)
        torch, model = engine.torch, engine.model.train()
        self.engine, self._torch = engine, torch
        self.images, labels = engine.backend.asarray(x_host), engine.backend.asarray(labels_host)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
        cross_entropy = torch.nn.functional.cross_entropy

        def forward_backward_step():
            cross_entropy(model(self.images), labels).backward()
            optimizer.step()

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                forward_backward_step()
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)  # backward then makes the grads in the graph's own memory pool
        with torch.cuda.graph(self._graph):
            forward_backward_step()

    def train_step(self) -> None:
        self._graph.replay()

    def infer_step(self) -> None:
        self.engine.predict(self.images)

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()


def nets_runner(model_name: str, backend, x_host, labels_host, captured: bool = False) -> Runner:
    """The nets model with Adam on `backend`, through the engine train.py uses (CPU threads included); captured:
    its training step as a CUDA graph (CapturedRunner)."""
    from nets.nn.models import build_model
    from nets.optim import Adam
    from nets.train.engine import NetsEngine

    model = build_model(model_name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend)
    return (CapturedRunner if captured else Runner)(engine, x_host, labels_host)


def torch_runner(model_name: str, device: str, x_host, labels_host, channels_last: bool = False) -> Runner:
    """The same architecture in PyTorch eager (torch.optim.Adam) on "cpu" or "gpu", through the torch engine."""
    from nets.baseline.engine import TorchEngine

    engine = TorchEngine({"name": model_name}, device=device, optimizer="adam", lr=1e-3, channels_last=channels_last,
                         count_totals=False)
    return Runner(engine, x_host, labels_host, impl="torch_channels_last" if channels_last else None)
