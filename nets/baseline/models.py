"""The MLP and CNN of nets.nn.models in PyTorch, with the same module and parameter names.

torch is imported inside the functions, so importing this module never needs torch.

    model = build_torch_model("cnn", dtype="float64")      # or a nets model's config()
    load_nets_params_into(model, nets_model.state_dict())
"""

from __future__ import annotations

import numpy

__all__ = ["TorchPredictor", "build_torch_model", "load_nets_params_into", "require_torch", "torch_available",
           "torch_state_dict_to_numpy"]


def require_torch(device: str = "cpu"):
    """torch, ready for `device` ("cpu" or "gpu"); backend.BackendError, one line, when it cannot be."""
    from backend import BackendError

    try:
        import torch
    except ImportError:
        raise BackendError("this needs PyTorch; install it with `pip install torch==2.13.0` (the CPU build) "
                           "or `pip install -e .[baseline]`.") from None
    if device == "gpu" and not torch.cuda.is_available():
        raise BackendError("PyTorch here cannot use a GPU (a CPU build, or no working CUDA device); "
                           "--impl torch on --device gpu needs a CUDA build of torch.")
    return torch


def torch_available() -> bool:
    """True when torch can be imported here."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


def _config(config_or_name) -> dict:
    defaults = {
        "mlp": {"sizes": (784, 128, 64, 10)},
        "cnn": {"in_channels": 1, "channels": (16, 32), "hidden": 48, "classes": 10, "image_size": 28},
    }
    config = {"name": config_or_name} if isinstance(config_or_name, str) else dict(config_or_name)
    name = config.pop("name", None)
    if name not in defaults:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(defaults)}.")
    config.pop("init", None)
    unknown = sorted(set(config) - set(defaults[name]))
    if unknown:
        raise ValueError(f"config for {name} has unknown keys {', '.join(map(str, unknown))}.")
    return {"name": name, **defaults[name], **config}


def build_torch_model(config_or_name, dtype="float32"):
    """torch.nn.Module for "mlp"/"cnn" (or a nets model's config()), parameters in `dtype`.

    CNN modules: conv1, conv2, fc1, fc2 (ReLU and pooling are functional, so the state_dict keys
    equal nets' parameter names); MLP modules: fc1, fc2, ..., fcK. Weights get PyTorch's default init.
    """
    import torch
    from torch import nn
    from torch.nn import functional

    config = _config(config_or_name)
    torch_dtype = getattr(torch, str(dtype))

    class TorchMLP(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
                setattr(self, f"fc{index}", nn.Linear(fan_in, fan_out))
            self.depth = len(sizes) - 1

        def forward(self, x):
            for index in range(1, self.depth + 1):
                if index > 1:
                    x = functional.relu(x)
                x = getattr(self, f"fc{index}")(x)
            return x

    class TorchCNN(nn.Module):
        def __init__(self, in_channels, channels, hidden, classes, image_size):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, channels[0], 3)
            self.conv2 = nn.Conv2d(channels[0], channels[1], 3)
            size = (image_size - 2) // 2 - 2 - 1
            self.fc1 = nn.Linear(channels[1] * size * size, hidden)
            self.fc2 = nn.Linear(hidden, classes)

        def forward(self, x):
            x = functional.max_pool2d(functional.relu(self.conv1(x)), 2, 2)
            x = functional.max_pool2d(functional.relu(self.conv2(x)), 2, 1)
            x = functional.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

    if config["name"] == "mlp":
        model = TorchMLP(tuple(config["sizes"]))
    else:
        model = TorchCNN(
            config["in_channels"], tuple(config["channels"]), config["hidden"], config["classes"], config["image_size"]
        )
    return model.to(torch_dtype)


def load_nets_params_into(torch_model, params_numpy_dict) -> None:
    """Copy {name: numpy array} (a nets model's state_dict()) into torch_model's parameters, in place.

    Values are cast to each parameter's dtype. Raises ValueError, one line, when names or shapes differ.
    """
    import numpy
    import torch

    state = torch_model.state_dict()
    missing = [name for name in state if name not in params_numpy_dict]
    unexpected = [name for name in params_numpy_dict if name not in state]
    if missing or unexpected:
        raise ValueError(f"parameter names differ: missing {missing}, unexpected {unexpected}.")
    with torch.no_grad():
        for name, tensor in state.items():
            value = numpy.asarray(params_numpy_dict[name])
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(f"shape mismatch for {name}: given {value.shape}, torch has {tuple(tensor.shape)}.")
            tensor.copy_(torch.from_numpy(numpy.ascontiguousarray(value)).to(tensor.dtype))


def torch_state_dict_to_numpy(torch_model) -> dict:
    """{name: numpy.ndarray} host copies of torch_model's state_dict (for nets' load_state_dict)."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in torch_model.state_dict().items()}


def _nets_input_shape(config: dict) -> tuple:
    """The input shape of the nets model a config describes ((784,) or (1, 28, 28) for the defaults)."""
    import backend
    from nets.nn.models import build_model

    cpu = backend.get_backend("cpu")
    return build_model(config, backend=cpu, dtype="float32", rng=numpy.random.default_rng(0)).input_shape


class TorchPredictor:
    """A PyTorch baseline model behind the few calls nets.report.evaluation makes of a nets model.

    forward(x, train=False) takes a host (NumPy) batch and returns host logits, so `evaluate` and
    `predict_classes` can score a checkpoint with PyTorch itself (scripts/evaluate.py --impl torch).
    """

    def __init__(self, checkpoint, device: str = "cpu"):
        torch = require_torch(device)
        self._torch = torch
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.name = checkpoint.model_name
        self.dtype = numpy.dtype(checkpoint.dtype)
        self.model = build_torch_model(checkpoint.model_config, dtype=self.dtype.name)
        load_nets_params_into(self.model, checkpoint.params)
        self.model.to(self.device).eval()
        self.input_shape = _nets_input_shape(checkpoint.model_config)

    def forward(self, x, train=False):
        """x: (N, *input_shape) NumPy -> logits (N, classes) NumPy, computed by PyTorch."""
        with self._torch.no_grad():
            batch = self._torch.from_numpy(numpy.ascontiguousarray(x)).to(self.device)
            return self.model(batch).cpu().numpy()

    def parameters(self) -> dict:
        return torch_state_dict_to_numpy(self.model)
