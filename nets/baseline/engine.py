"""The PyTorch engine: the baseline model behind the Engine interface of nets/train/engine.py, so that training,
evaluation (evaluate.py --impl torch), the bench and the profiler all run PyTorch through this one class.

    engine = TorchEngine(model_config, device="cpu", dtype="float32", optimizer="adam", lr=1e-3)
    engine.load_state(EngineState(nets_model.state_dict()))   # the nets' initial weights, or a checkpoint's

torch is imported when an engine is built, so importing this module never needs torch. On --device gpu the
model and the data live on CUDA.
"""

from __future__ import annotations

import numpy

from nets.baseline import require_torch
from nets.baseline.models import build_torch_model, load_nets_params_into
from nets.nn.architecture import input_shape
from nets.optim import STATE_NAMES
from nets.train.engine import EngineState
from nets.train.graph import eager_because
from nets.train.loop import Diverged

__all__ = ["TorchBackend", "TorchEngine", "engine_for_run"]


class TorchBackend:
    """backend.Backend's array calls over torch tensors on one device (the engine's `backend`)."""

    def __init__(self, torch, device: str, channels_last: bool = False):
        self.torch = torch
        self.name = device
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.channels_last = channels_last

    def asarray(self, host, dtype=None):
        """A host array -> a tensor on the device (4-D inputs laid out channels-last when asked)."""
        tensor = self.torch.from_numpy(numpy.ascontiguousarray(host, dtype=dtype))
        tensor = tensor.to(self.device)
        if self.channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=self.torch.channels_last)
        return tensor

    def upload(self, into, host) -> None:
        """Copy a host array into the existing tensor `into`, in place (cast to its dtype)."""
        into.copy_(self.torch.from_numpy(numpy.ascontiguousarray(host)))

    def to_numpy(self, tensor) -> numpy.ndarray:
        return tensor.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def take(self, tensor, index, axis=None, out=None):
        if axis is None:
            return self.torch.take(tensor, index, out=out) if out is not None else self.torch.take(tensor, index)
        if out is not None:
            return self.torch.index_select(tensor, axis, index, out=out)
        return self.torch.index_select(tensor, axis, index)

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=getattr(self.torch, numpy.dtype(dtype).name), device=self.device)


class TorchEngine:
    """The baseline model (nets/baseline/models.py) with torch.optim, on "cpu" or "gpu" (CUDA).

    optimizer: "adam", "sgd", or None for a model that only predicts (evaluation).
    channels_last: the CNN and its 4-D inputs in torch's channels-last layout (a bench variant).
    count_totals: add each step's loss and hits up on the device for totals() (training); the bench times
        the bare eager step, as PyTorch users write it, without them.
    """

    impl = "torch"

    def __init__(self, model_config: dict, *, device: str = "cpu", dtype: str = "float32", optimizer: str | None = None,
                 lr: float = 1e-3, momentum: float = 0.0, weight_decay: float = 0.0, channels_last: bool = False,
                 count_totals: bool = True):
        torch = require_torch(device)
        self.torch = torch
        self.backend = TorchBackend(torch, device, channels_last)
        self.model_config = dict(model_config)
        self.input_shape, self.dtype = input_shape(model_config), numpy.dtype(dtype)
        self.model = build_torch_model(model_config, dtype=self.dtype.name).to(self.backend.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer_name = optimizer
        self.optimizer = None
        params = self.model.parameters()
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self._planned = iter(())
        self._training = None
        self.count_totals = count_totals
        # running loss sum and hits, in float64 so that hits stay exact integers
        self._totals = torch.zeros(2, dtype=torch.float64, device=self.backend.device)

    def _mode(self, training: bool) -> None:
        if self._training is not training:
            self.model.train(training)
            self._training = training

    def batch(self, images, labels, index, moves=None):
        x, y = self.backend.take(images, index, axis=0), self.backend.take(labels, index, axis=0)
        if moves is not None:
            moves(x.view(len(x), -1), index)  # index_select's result is contiguous: the view is x itself
        if self.backend.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=self.torch.channels_last)
        return x, y

    def plan(self, learning_rates, capacity: int = 0) -> None:
        """The lr of each coming step; torch.optim reads it from the param group, set before each step."""
        self._planned = iter(list(learning_rates))

    def graphed(self, function, mode: str, note=None):
        """None: the torch engine runs each step eagerly (torch.cuda.graphs is the bench's anchor, not train.py's)."""
        eager_because(mode, gpu=self.backend.name == "gpu", impl=self.impl)
        return None

    def train_step(self, x, labels) -> None:
        lr = next(self._planned, None)
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self._mode(True)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self.torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        try:
            self.optimizer.step()
        except RuntimeError as error:
            if "overflow" not in str(error):
                raise
            raise Diverged(self._overflow_text(lr, error)) from None
        if not self.count_totals:
            return
        with self.torch.no_grad():
            self._totals[0] += loss.detach() * len(labels)
            self._totals[1] += (logits.argmax(dim=1) == labels).sum()

    def _overflow_text(self, lr, error: RuntimeError) -> str:
        """What a step whose numbers overflowed PyTorch's optimizer says (the nets get a NaN loss, and say so)."""
        lr = self.optimizer.param_groups[0]["lr"] if lr is None else lr
        return (f"PyTorch's optimizer step overflowed {self.dtype.name} at lr {lr:g} ({str(error).splitlines()[0]}); "
                "training stopped. Try a smaller --lr.")

    def totals(self) -> tuple[float, int]:
        loss_sum, hits = self._totals.tolist()  # one read of both
        return float(loss_sum), int(round(hits))

    def reset_totals(self) -> None:
        self._totals.zero_()

    def predict(self, x):
        self._mode(False)
        with self.torch.inference_mode():
            return self.model(x)

    def add_loss_and_hits(self, logits, labels, total) -> None:
        """total (2,) float64 on the device += [summed cross-entropy, correct predictions] of a batch's logits."""
        total[0] += self.torch.nn.functional.cross_entropy(logits.double(), labels, reduction="sum")
        total[1] += (logits.argmax(1) == labels).sum()

    def state(self) -> EngineState:
        params = {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}
        return EngineState(params, None if self.optimizer is None else self._optimizer_state())

    def _optimizer_state(self) -> dict:
        """torch.optim's state in the nets optimizer's state_dict layout, so one checkpoint format serves both."""
        names = {id(param): name for name, param in self.model.named_parameters()}
        group = self.optimizer.param_groups[0]
        state = {state_name: {} for state_name in STATE_NAMES[self.optimizer_name]}
        step = 0
        for param, param_state in self.optimizer.state.items():
            for state_name in state:
                if param_state.get(state_name) is not None:
                    state[state_name][names[id(param)]] = param_state[state_name].detach().cpu().numpy().copy()
            if "step" in param_state:
                step = int(param_state["step"])
        hyperparameters = {"lr": group["lr"], "weight_decay": group["weight_decay"]}
        if self.optimizer_name == "adam":
            hyperparameters.update(betas=list(group["betas"]), eps=group["eps"])
        else:
            hyperparameters.update(momentum=group["momentum"], dampening=group["dampening"], nesterov=group["nesterov"])
        return {"name": self.optimizer_name, "step": step, "hyperparameters": hyperparameters,
                "state": {key: value for key, value in state.items() if value}}

    def load_state(self, state: EngineState) -> None:
        load_nets_params_into(self.model, state.params)
        saved = state.optimizer_state
        if not saved or self.optimizer is None:
            return
        if saved.get("name") != self.optimizer_name:
            raise ValueError(f"the checkpoint's optimizer is {saved.get('name')!r}, but this run uses "
                             f"{self.optimizer_name!r}.")
        torch = self.torch
        named = dict(self.model.named_parameters())
        for state_name, per_param in saved.get("state", {}).items():
            for name, value in per_param.items():
                entry = self.optimizer.state[named[name]]
                entry[state_name] = torch.as_tensor(value, dtype=named[name].dtype, device=self.backend.device).clone()
                if self.optimizer_name == "adam":
                    entry["step"] = torch.tensor(float(saved.get("step", 0)))


def engine_for_run(settings, model) -> TorchEngine:
    """The torch engine of a training run (nets/train/run.py, given it by scripts/train.py): the baseline of
    `model`'s architecture, starting from `model`'s weights (the nets' initialisation, so both impls start alike),
    on settings.device ("auto": CUDA when torch has it)."""
    device = settings.device
    if device == "auto":
        device = "gpu" if require_torch("cpu").cuda.is_available() else "cpu"
    hyperparameters = settings.hyperparameters
    engine = TorchEngine(model.config(), device=device, dtype=settings.dtype, optimizer=hyperparameters.optimizer,
                         lr=hyperparameters.lr, momentum=hyperparameters.momentum,
                         weight_decay=hyperparameters.weight_decay)
    engine.load_state(EngineState(model.state_dict()))
    return engine
