"""The PyTorch twin: the same models in torch, one engine over them, PyTorch state_dict interop. Besides bench/,
the only wing that imports torch, and only when a function needs it (pip install -e .[baseline]).

    models.py      build_torch_model(config): the MLP and CNN of nets.nn with the same parameter names
    engine.py      TorchEngine: the engine interface of nets.train.engine over a torch model and torch.optim
    checkpoint.py  .pt files in and out; load_any_checkpoint reads a .pt or a nets .npz

Here: the one way to import torch.
"""

from __future__ import annotations

from nets.commands import torch_install_hint
from nets.errors import DeviceError

__all__ = ["require_torch", "torch_or_none"]


def torch_or_none():
    """torch, or None when it cannot be imported here."""
    try:
        import torch
    except Exception:  # ImportError, or a broken install
        return None
    return torch


def require_torch(device: str = "cpu"):
    """torch, ready for `device` ("cpu" or "gpu"); DeviceError, one line, when it cannot be."""
    torch = torch_or_none()
    if torch is None:
        raise DeviceError(f"this needs PyTorch, which is not installed; install its CPU build with "
                           f"`{torch_install_hint()}` (leave out --index-url for the CUDA build, several GB).")
    if device == "gpu" and not torch.cuda.is_available():
        raise DeviceError("PyTorch here cannot use a GPU (a CPU build, or no working CUDA device); "
                           "--impl torch on --device gpu needs a CUDA build of torch.")
    return torch
