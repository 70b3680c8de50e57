"""The MLP and CNN of nets.nn.models in PyTorch, with the same module and parameter names.

torch is imported inside the functions, so importing this module never needs torch.

    model = build_torch_model("cnn", dtype="float64")      # or a nets model's config()
    load_nets_params_into(model, nets_model.state_dict())
"""

from __future__ import annotations

import numpy

from backend import to_numpy

from nets.baseline import require_torch
from nets.nn.architecture import check_shapes, complete_config, walk

__all__ = ["build_torch_model", "load_nets_params_into"]


def build_torch_model(config_or_name, dtype="float32"):
    """torch.nn.Module for "mlp"/"cnn" (or a nets model's config()), parameters in `dtype`.

    CNN modules: conv1, conv2, fc1, fc2 (ReLU and pooling are functional, so the state_dict keys
    equal nets' parameter names); MLP modules: fc1, fc2, ..., fcK. Weights get PyTorch's default init.
    The architecture is nets.nn.architecture's stages (ValueError, one line, for a config it refuses).
    """
    torch = require_torch()
    nn, functional = torch.nn, torch.nn.functional

    config = complete_config(config_or_name)
    walked = walk(config)

    class TorchNet(nn.Module):
        """The stages of nets/nn/architecture.py: a module per stage with parameters, under the stage's name (so
        the state_dict keys are nets' parameter names); ReLU, max-pooling and flattening are functional."""

        def __init__(self):
            super().__init__()
            self.stages = [stage for stage, _, _ in walked]
            for stage, (inputs, *_), _ in walked:
                if stage.kind == "linear":
                    setattr(self, stage.name, nn.Linear(inputs, stage.out))
                elif stage.kind == "conv":
                    setattr(self, stage.name, nn.Conv2d(inputs, stage.out, stage.kernel, stage.stride))

        def forward(self, x):
            for stage in self.stages:
                if stage.has_parameters:
                    x = getattr(self, stage.name)(x)
                elif stage.kind == "relu":
                    x = functional.relu(x)
                elif stage.kind == "maxpool":
                    x = functional.max_pool2d(x, stage.kernel, stage.stride)
                else:
                    x = torch.flatten(x, 1)
            return x

    return TorchNet().to(getattr(torch, str(dtype)))


def load_nets_params_into(torch_model, params) -> None:
    """Copy {name: array} (a nets model's state_dict(), host or device) into torch_model's parameters, in place.

    Values are cast to each parameter's dtype. Raises ValueError, one line, when names or shapes differ.
    """
    torch = require_torch()
    state = torch_model.state_dict()
    values = {name: numpy.ascontiguousarray(to_numpy(value)) for name, value in params.items()}
    check_shapes({name: value.shape for name, value in values.items()},
                 {name: tuple(tensor.shape) for name, tensor in state.items()},
                 "cnn" if "conv1.weight" in state else "mlp")
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(values[name]).to(tensor.dtype))
