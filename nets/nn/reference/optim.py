"""SGD and Adam one tensor at a time, with torch.optim's update rules.

    optimizer = Adam(model.parameters(), lr=1e-3)
    loss, logits = model.loss_and_gradients(x, labels)
    optimizer.step(model.gradients())     # grads by parameter name; every parameter updated in place

The state (exp_avg, exp_avg_sq; momentum_buffer) and `state_dict()` are laid out as nets.optim's, {"name", "step",
"hyperparameters", "state": {state name: {parameter name: array}}}, so a checkpoint moves between the two. The fast
optimizers (nets/optim) update one flat buffer holding every parameter: a dozen whole-buffer operations per step,
against a dozen per tensor here. A training run changes `lr` before each step (nets/train/reference.py).
"""

from __future__ import annotations

import math

import numpy

from backend import array_module, to_numpy

__all__ = ["Adam", "SGD", "build_reference_optimizer", "load_optimizer_state", "optimizer_state"]


class Optimizer:
    """What SGD and Adam share: the parameters {name: array}, updated in place, the step count and the state."""

    name = "optimizer"
    state_names: tuple[str, ...] = ()

    def __init__(self, params, lr):
        self.params, self.lr = params, lr
        self.step_count = 0
        self.state = {state_name: {} for state_name in self.state_names}

    def step(self, grads) -> None:
        """One update of every parameter from grads, {name: gradient} (a model's gradients())."""
        self.step_count += 1
        for name, param in self.params.items():
            self.update(name, param, grads[name], self.lr)


class SGD(Optimizer):
    """torch.optim.SGD: with g = grad + weight_decay * param,
        buf = g on the first step, then momentum * buf + (1 - dampening) * g
        param -= lr * (g + momentum * buf if nesterov else buf)        (param -= lr * g without momentum)
    """

    name = "sgd"
    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov

    def hyperparameters(self) -> dict:
        return {"lr": float(self.lr), "momentum": float(self.momentum), "dampening": float(self.dampening),
                "weight_decay": float(self.weight_decay), "nesterov": bool(self.nesterov)}

    def update(self, name, param, grad, lr) -> None:
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if self.momentum:
            buffers = self.state["momentum_buffer"]
            if name not in buffers:
                buffers[name] = grad.copy()
            else:
                buffers[name] = self.momentum * buffers[name] + (1 - self.dampening) * grad
            grad = grad + self.momentum * buffers[name] if self.nesterov else buffers[name]
        param -= lr * grad


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient, not AdamW). At step t:
        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g                 a running mean of the gradient
        v = beta2 * v + (1 - beta2) * g * g             and of its square
        param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    The two corrections undo the pull of m and v towards their zero start in the first steps.
    """

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def hyperparameters(self) -> dict:
        return {"lr": float(self.lr), "betas": [float(beta) for beta in self.betas], "eps": float(self.eps),
                "weight_decay": float(self.weight_decay)}

    def update(self, name, param, grad, lr) -> None:
        (beta1, beta2), t = self.betas, self.step_count
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        xp = array_module(param)
        m = self.state["exp_avg"].get(name, xp.zeros_like(param))
        v = self.state["exp_avg_sq"].get(name, xp.zeros_like(param))
        m = self.state["exp_avg"][name] = beta1 * m + (1 - beta1) * grad
        v = self.state["exp_avg_sq"][name] = beta2 * v + (1 - beta2) * grad * grad
        param -= lr / (1 - beta1**t) * m / (xp.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps)


def build_reference_optimizer(name, params, lr, momentum=0.0, weight_decay=0.0) -> Optimizer:
    """An optimizer by name, as nets.optim.build_optimizer: "sgd" (uses momentum) or "adam" (default betas)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of sgd, adam.")


def optimizer_state(optimizer: Optimizer) -> dict:
    """The optimizer as a checkpoint keeps it: host copies of its state, in nets.optim's layout."""
    state = {state_name: {name: numpy.array(to_numpy(array)) for name, array in arrays.items()}
             for state_name, arrays in optimizer.state.items() if arrays}
    return {"name": optimizer.name, "step": optimizer.step_count, "hyperparameters": optimizer.hyperparameters(),
            "state": state}


def load_optimizer_state(optimizer: Optimizer, state_dict) -> None:
    """Put an optimizer_state() (of this optimizer or of nets.optim's of the same name) back; ValueError when it is
    another optimizer's or names other parameters. As torch.optim does, the saved hyperparameters win."""
    if state_dict.get("name") != optimizer.name:
        raise ValueError(f"the optimizer state is for {state_dict.get('name')!r}, but this optimizer is "
                         f"{optimizer.name!r}.")
    for state_name, arrays in state_dict["state"].items():
        if state_name not in optimizer.state_names or not set(arrays) <= set(optimizer.params):
            raise ValueError(f"the {optimizer.name} optimizer state {state_name} does not fit these parameters.")
    for key, value in state_dict["hyperparameters"].items():
        if key in optimizer.hyperparameters():
            setattr(optimizer, key, tuple(value) if key == "betas" else value)
    optimizer.state = {state_name: {} for state_name in optimizer.state_names}
    for state_name, arrays in state_dict["state"].items():
        for name, array in arrays.items():
            param = optimizer.params[name]
            restored = array_module(param).asarray(array, dtype=param.dtype)
            optimizer.state[state_name][name] = restored.reshape(param.shape)
    optimizer.step_count = int(state_dict["step"])
