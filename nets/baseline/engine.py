"""The PyTorch engine: trains the baseline model through the same loop, data order and checkpoints as the nets.

torch is imported when an engine is built, so importing this module never needs torch.
On --device gpu the model and the data live on CUDA.
"""

from __future__ import annotations

import numpy

# nets optimizer state names <-> torch.optim per-parameter state names
_STATE_NAMES = {"adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}


class TorchEngine:
    """Trains a torch.nn.Module of the baseline (nets/baseline/models.py) with torch.optim."""

    impl = "torch"

    def __init__(self, model, hyper, device: str, dtype: str, model_config: dict):
        """device: "cpu" or "gpu" (CUDA)."""
        from nets.baseline.models import require_torch

        torch = require_torch(device)
        self.model_config = model_config
        self.torch = torch
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.dtype = getattr(torch, str(dtype))
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.optimizer_name = hyper.optimizer
        params = self.model.parameters()
        if hyper.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum,
                                             weight_decay=hyper.weight_decay)
        self._loss = torch.nn.functional.cross_entropy
        self._planned = iter(())
        # running loss sum and hits, in float64 so that hits stay exact integers
        self._totals = torch.zeros(2, dtype=torch.float64, device=self.device)

    def to_device(self, host_array, dtype=None):
        tensor = self.torch.from_numpy(numpy.ascontiguousarray(host_array))
        if dtype is not None:
            tensor = tensor.to(getattr(self.torch, str(numpy.dtype(dtype))))
        return tensor.to(self.device)

    def index_vector(self, values):
        """A host vector (a permutation, or per-image flags) -> a tensor on the device, in one copy."""
        values = numpy.asarray(values)
        return self.torch.from_numpy(values if values.dtype == bool else values.astype(numpy.int64)).to(self.device)

    def take(self, array, index):
        return self.torch.index_select(array, 0, index)

    def gather(self, images, labels, index):
        """The batch `index` of the dataset's images and labels (as NetsEngine.gather)."""
        return self.take(images, index), self.take(labels, index)

    def load_augmentation(self, tables) -> None:
        """As NetsEngine.load_augmentation: the pixel maps (T, P) to the device once."""
        self._augment_maps = self.torch.from_numpy(numpy.ascontiguousarray(tables, dtype=numpy.int64)).to(self.device)

    def augment(self, x, moves, index):
        """As NetsEngine.augment: each image of the batch `index` moved by its pixel map (moves: (N,) the
        epoch's); pixels from outside the image are 0."""
        flat = x.reshape(x.shape[0], -1)
        padded = self.torch.cat([flat, flat.new_zeros(flat.shape[0], 1)], dim=1)
        chosen = self._augment_maps.index_select(0, moves.index_select(0, index))
        return padded.gather(1, chosen).reshape(x.shape)

    def plan(self, learning_rates) -> None:
        """The lr of each coming step; torch.optim reads it from the param group, set before each step."""
        self._planned = iter(list(learning_rates))

    def train_step(self, x, labels) -> None:
        lr = next(self._planned, None)
        if lr is not None:
            self.set_lr(lr)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = self._loss(logits, labels)
        loss.backward()
        self.optimizer.step()
        with self.torch.no_grad():
            self._totals[0] += loss.detach() * len(labels)
            self._totals[1] += (logits.argmax(dim=1) == labels).sum()

    def totals(self) -> tuple[float, int]:
        loss_sum, hits = self._totals.tolist()  # one read of both
        return float(loss_sum), int(round(hits))

    def reset_totals(self) -> None:
        self._totals.zero_()

    def predict(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(x).argmax(dim=1)

    def count_hits(self, x, labels):
        return (self.predict(x) == labels).sum()

    def to_host(self, scalar) -> float:
        return float(scalar.item())

    def to_numpy(self, tensor):
        return tensor.detach().cpu().numpy()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def parameters_numpy(self) -> dict:
        """Host copies of the parameters under their state_dict names (the nets names too)."""
        return {name: value.detach().cpu().numpy().copy() for name, value in self.model.state_dict().items()}

    def optimizer_state(self) -> dict:
        """torch.optim's state in the nets optimizer's state_dict layout, so one checkpoint format serves both."""
        names = {id(param): name for name, param in self.model.named_parameters()}
        group = self.optimizer.param_groups[0]
        state = {state_name: {} for state_name in _STATE_NAMES[self.optimizer_name]}
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

    def load_state(self, params: dict, optimizer_state: dict | None) -> None:
        torch = self.torch
        self.model.load_state_dict({name: torch.from_numpy(numpy.asarray(value)) for name, value in params.items()})
        if not optimizer_state:
            return
        if optimizer_state.get("name") != self.optimizer_name:
            raise ValueError(f"the checkpoint's optimizer is {optimizer_state.get('name')!r}, "
                             f"but this run uses {self.optimizer_name!r}.")
        named = dict(self.model.named_parameters())
        for state_name, per_param in optimizer_state.get("state", {}).items():
            for name, value in per_param.items():
                entry = self.optimizer.state[named[name]]
                entry[state_name] = torch.as_tensor(value, dtype=self.dtype, device=self.device).clone()
                if self.optimizer_name == "adam":
                    entry["step"] = torch.tensor(float(optimizer_state.get("step", 0)))
