"""SGD and Adam with torch.optim's update rules, over one flat parameter buffer, learning rate on the device.

    optimizer = Adam(model.parameters(), lr=1e-3)   # a ParameterBuffer: the whole model is one flat array
    optimizer.plan(learning_rates)                  # the lr of each coming step, to the device in one copy
    loss, logits = model.loss_and_gradients(x, labels)
    optimizer.step()                                # reads the buffer's gradients (model.gradients().flat)

`params` is a model's ParameterBuffer (nets/nn/parameters.py): every update is a dozen operations over the
whole flat buffer, not a dozen per tensor (Adam: 12 kernel launches per step for any number of tensors).
A plain dict name -> array works too (each array is then updated on its own, and `step(grads)` takes the
gradients by name). Updates write into the parameter arrays (`out=`, in-place operators), never rebind them.

Ready for a captured step: the learning rate and Adam's bias corrections come from a table on the device
(`plan`), read at step t through a view or, with capturable=True, a gather at a device step counter (two
more launches) so that a replayed CUDA graph sees each step's values; the state (exp_avg, ...) is
allocated up front and loaded by copying into it. A step outside the plan uses `lr` (a plain attribute)
and copies its coefficients to the device then.

`state_dict()` is host data only (numpy arrays, ints, floats), keyed by state name then parameter name:

    {"name": "adam", "step": 3,
     "hyperparameters": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0},
     "state": {"exp_avg": {"fc1.weight": array, ...}, "exp_avg_sq": {...}}}

and `load_state_dict` copies it back into the state arrays, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from nets.optim.adam import Adam
from nets.optim.base import Optimizer
from nets.optim.sgd import SGD

__all__ = ["SGD", "Adam", "Optimizer", "OPTIMIZERS", "OPTIMIZER_CLASSES", "STATE_NAMES", "build_optimizer"]

OPTIMIZER_CLASSES = {"sgd": SGD, "adam": Adam}  # by name; each checks its own state (the checkpoint loader asks it)
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
# The per-parameter state each keeps, by name (torch.optim's names too; checkpoints store it under these).
STATE_NAMES = {name: optimizer.state_names for name, optimizer in OPTIMIZER_CLASSES.items()}


def build_optimizer(name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """An optimizer by name: "sgd" (uses `momentum`) or "adam" (default betas; `momentum` is not used)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
