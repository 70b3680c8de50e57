"""The nets engine: what the training loop needs from a hand-written model and its optimizer.

An engine hides which library computes (nets here, PyTorch in nets/torch_engine.py) behind a few calls:
    to_device(host_array) / index_vector(order)   once per run / once per epoch
    take(array, index)                             a batch gathered on the device
    train_step(x, labels) -> (loss, correct)       device scalars; nothing is read back
    count_hits(x, labels)                          correct predictions, a device scalar
    to_host(scalar) -> float                       the only device -> host read, done every few steps
    to_numpy(array)                                device array -> numpy (after training: plots)
    set_lr(lr), synchronize()
    model_config, parameters_numpy(), optimizer_state(), load_state(params, optimizer_state)   for checkpoints
"""

from __future__ import annotations

from backend import Backend

from .parallel import DataParallel, default_workers


class NetsEngine:
    """Trains a nets model (nets/models.py) with a nets optimizer (nets/optim.py) on `backend`."""

    impl = "nets"

    def __init__(self, model, optimizer, backend: Backend, workers: int | None = None):
        """workers: CPU threads that split each batch (nets/parallel.py); default: the cores, on the CPU only."""
        self.model = model
        self.optimizer = optimizer
        self.backend = backend
        self.xp = backend.xp
        self.model_config = model.config()
        if workers is None:
            workers = 1 if backend.is_gpu or model.min_per_worker is None else default_workers()
        # what computes the steps: the model itself, or replicas of it on CPU threads
        self.stepper = DataParallel(model, workers, model.min_per_worker or 1) if workers > 1 else model

    def to_device(self, host_array, dtype=None):
        return self.backend.asarray(host_array, dtype=dtype)

    def index_vector(self, order):
        return self.backend.asarray(order)

    def take(self, array, index):
        return self.xp.take(array, index, axis=0)

    def mirror(self, x, which, width):
        """x: (N, ...) images `width` pixels wide, flat or not; which: (N,) bool -> x with the images where
        `which` is set flipped left-right."""
        images = x.reshape(x.shape[0], -1, width)
        flipped = self.xp.where(which[:, None, None], images[:, :, ::-1], images)
        return flipped.reshape(x.shape)

    def train_step(self, x, labels):
        loss, logits = self.stepper.loss_and_gradients(x, labels)
        self.optimizer.step(self.stepper.gradients())
        return loss, (logits.argmax(axis=1) == labels).sum()

    def predict(self, x):
        """Predicted classes (N,) on the device, in evaluation mode."""
        return self.stepper.forward(x, train=False).argmax(axis=1)

    def count_hits(self, x, labels):
        return (self.predict(x) == labels).sum()

    def to_host(self, scalar) -> float:
        return float(scalar)

    def to_numpy(self, array):
        return self.backend.to_numpy(array)

    def set_lr(self, lr: float) -> None:
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
