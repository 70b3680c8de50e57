"""The MLP and CNN of nets.nn.models in PyTorch, with the same module and parameter names.

torch is imported inside the functions, so importing this module never needs torch.

    model = build_torch_model("cnn", dtype="float64")      # or a nets model's config()
    load_nets_params_into(model, nets_model.state_dict())
"""

from __future__ import annotations

import numpy

from backend import to_numpy

from nets.baseline import require_torch
from nets.nn.architecture import check_shapes, cnn_side, complete_config

__all__ = ["build_torch_model", "load_nets_params_into"]


def build_torch_model(config_or_name, dtype="float32"):
    """torch.nn.Module for "mlp"/"cnn" (or a nets model's config()), parameters in `dtype`.

    CNN modules: conv1, conv2, fc1, fc2 (ReLU and pooling are functional, so the state_dict keys
    equal nets' parameter names); MLP modules: fc1, fc2, ..., fcK. Weights get PyTorch's default init.
    The architecture is nets.nn.architecture's (ValueError, one line, for a config it refuses).
    """
    torch = require_torch()
    nn, functional = torch.nn, torch.nn.functional

    config = complete_config(config_or_name)

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
            self.fc1 = nn.Linear(channels[1] * cnn_side(image_size) ** 2, hidden)
            self.fc2 = nn.Linear(hidden, classes)

        def forward(self, x):
            x = functional.max_pool2d(functional.relu(self.conv1(x)), 2, 2)
            x = functional.max_pool2d(functional.relu(self.conv2(x)), 2, 1)
            x = functional.relu(self.fc1(torch.flatten(x, 1)))
            return self.fc2(x)

    if config["name"] == "mlp":
        model = TorchMLP(tuple(config["sizes"]))
    else:
        model = TorchCNN(config["in_channels"], tuple(config["channels"]), config["hidden"], config["classes"],
                         config["image_size"])
    return model.to(getattr(torch, str(dtype)))


def load_nets_params_into(torch_model, params) -> None:
    """Copy {name: array} (a nets model's state_dict(), host or device) into torch_model's parameters, in place.

    Values are cast to each parameter's dtype. Raises ValueError, one line, when names or shapes differ.
    """
    torch = require_torch()
    state = torch_model.state_dict()
    values = {name: numpy.ascontiguousarray(to_numpy(value)) for name, value in params.items()}
    check_shapes({name: value.shape for name, value in values.items()},
                 {name: tuple(tensor.shape) for name, tensor in state.items()}, "cnn" if "conv1.weight" in state else "mlp")
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(values[name]).to(tensor.dtype))
