"""SGD and Adam with exactly torch.optim's update rules, updating a model's parameters in place.

    optimizer = Adam(model.parameters(), lr=1e-3)
    loss, logits = model.loss_and_gradients(x, labels)
    optimizer.step(model.gradients())        # same names as the parameters
    optimizer.lr = schedule(epoch)           # a plain attribute, read at every step

`params` is the model's ordered dict name -> array (NumPy or CuPy). The arrays are the ones the layers
compute with, so every update writes into them (`out=` and in-place operators), never rebinds them.
Each optimizer keeps two scratch buffers as large as its largest parameter and reuses slices of them for
every parameter, so a step allocates no parameter-sized temporaries.

`state_dict()` is host data only (numpy arrays, ints, floats), keyed by state name then parameter name:

    {"name": "adam", "step": 3,
     "hyperparameters": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0},
     "state": {"exp_avg": {"fc1.weight": array, ...}, "exp_avg_sq": {...}}}

and `load_state_dict` puts it back on the parameters' device, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from backend import array_module, to_numpy

__all__ = ["SGD", "Adam", "Optimizer", "OPTIMIZERS", "build_optimizer"]


class Optimizer:
    """What SGD and Adam share: the parameters, the step count, scratch buffers, state (de)serialisation.

    Subclasses set `name`, `state_names` (per-parameter buffers, in the order they are stored),
    and implement `_update(name, param, grad, scratch_a, scratch_b)` and `hyperparameters()`.
    """

    name = "optimizer"
    state_names: tuple[str, ...] = ()

    def __init__(self, params, lr):
        params = dict(params)
        if not params:
            raise ValueError("the optimizer got no parameters; pass model.parameters().")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        self.params = params
        self.lr = lr
        self.step_count = 0
        # name -> {state name -> array}; filled lazily at the first step, like torch.optim.
        self.state: dict[str, dict[str, object]] = {name: {} for name in params}
        first = next(iter(params.values()))
        self._xp = array_module(*params.values())
        largest = max(int(p.size) for p in params.values())
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(str(d) for d in dtypes)}.")
        self._scratch = (
            self._xp.empty(largest, dtype=first.dtype),
            self._xp.empty(largest, dtype=first.dtype),
        )

    def hyperparameters(self) -> dict:
        raise NotImplementedError

    def _set_hyperparameters(self, values: dict) -> None:
        raise NotImplementedError

    def _update(self, name, param, grad, scratch_a, scratch_b) -> None:
        raise NotImplementedError

    def step(self, grads) -> None:
        """Update every parameter in place from `grads`, a dict with the parameters' names."""
        if grads.keys() != self.params.keys():
            missing = sorted(self.params.keys() - grads.keys())
            unexpected = sorted(grads.keys() - self.params.keys())
            raise ValueError(
                f"gradients do not match the parameters (missing {missing}, unexpected {unexpected}); "
                "pass model.gradients() of the model whose parameters the optimizer holds."
            )
        self.step_count += 1
        flat_a, flat_b = self._scratch
        for name, param in self.params.items():
            grad = grads[name]
            if grad.shape != param.shape:
                raise ValueError(f"gradient {name} has shape {tuple(grad.shape)}, parameter has {tuple(param.shape)}.")
            # Contiguous slices of the flat buffers, viewed in the parameter's shape: no allocation.
            scratch_a = flat_a[: param.size].reshape(param.shape)
            scratch_b = flat_b[: param.size].reshape(param.shape)
            self._update(name, param, grad, scratch_a, scratch_b)

    def _decayed(self, param, grad, out):
        """grad + weight_decay * param (torch's L2 term, added to the gradient), or grad itself."""
        weight_decay = float(self.weight_decay)
        if weight_decay == 0.0:
            return grad
        self._xp.multiply(param, weight_decay, out=out)
        out += grad
        return out

    def state_dict(self) -> dict:
        """The optimizer's state as host data: name, step, hyperparameters, state[state name][param name]."""
        state = {
            state_name: {name: to_numpy(buffers[state_name]).copy() for name, buffers in self.state.items() if state_name in buffers}
            for state_name in self.state_names
        }
        return {
            "name": self.name,
            "step": int(self.step_count),
            "hyperparameters": self.hyperparameters(),
            "state": {key: value for key, value in state.items() if value},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore `state_dict()` output (hyperparameters too, as torch.optim does) onto the parameters' device.

        Raises ValueError when it belongs to another optimizer or other parameters.
        """
        name = state_dict.get("name")
        if name != self.name:
            raise ValueError(f"the optimizer state is for {name!r}, but this optimizer is {self.name!r}.")
        buffers = state_dict.get("state", {})
        unknown = sorted(set(buffers) - set(self.state_names))
        if unknown:
            raise ValueError(f"the {self.name} optimizer state has unknown entries {unknown}.")
        restored = {name: {} for name in self.params}
        for state_name, per_param in buffers.items():
            if per_param.keys() - self.params.keys():
                extra = sorted(per_param.keys() - self.params.keys())
                raise ValueError(f"optimizer state {state_name} names parameters the model lacks: {extra}.")
            for name, array in per_param.items():
                param = self.params[name]
                if tuple(array.shape) != tuple(param.shape):
                    raise ValueError(
                        f"optimizer state {state_name}/{name} has shape {tuple(array.shape)}, "
                        f"the parameter has {tuple(param.shape)}."
                    )
                restored[name][state_name] = self._xp.array(array, dtype=param.dtype)
        self._set_hyperparameters(dict(state_dict.get("hyperparameters", {})))
        self.step_count = int(state_dict.get("step", 0))
        self.state = restored

    def __repr__(self):
        settings = ", ".join(f"{key}={value}" for key, value in self.hyperparameters().items())
        return f"{type(self).__name__}({settings}, step={self.step_count})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, L2 weight decay and Nesterov,
    as torch.optim.SGD:

        g = grad + weight_decay * param
        buf = g (first step), then buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf
        param -= lr * g
    """

    name = "sgd"
    state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, lr)
        self.momentum = momentum
        self.dampening = dampening
        self.weight_decay = weight_decay
        self.nesterov = nesterov

    def hyperparameters(self) -> dict:
        return {
            "lr": float(self.lr),
            "momentum": float(self.momentum),
            "dampening": float(self.dampening),
            "weight_decay": float(self.weight_decay),
            "nesterov": bool(self.nesterov),
        }

    def _set_hyperparameters(self, values: dict) -> None:
        for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov"):
            if key in values:
                setattr(self, key, values[key])

    def _update(self, name, param, grad, scratch_a, scratch_b) -> None:
        xp = self._xp
        momentum = float(self.momentum)
        direction = self._decayed(param, grad, out=scratch_a)
        if momentum != 0.0:
            state = self.state[name]
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = buf = direction.copy()
            else:
                buf *= momentum
                damping = 1.0 - float(self.dampening)
                if damping == 1.0:
                    buf += direction
                else:
                    buf += xp.multiply(direction, damping, out=scratch_b)
            if self.nesterov:
                # direction may live in scratch_a; scratch_b is free here.
                xp.multiply(buf, momentum, out=scratch_b)
                scratch_b += direction
                direction = scratch_b
            else:
                direction = buf
        # scratch_a is free again (direction is buf, scratch_b, the raw grad, or scratch_a itself).
        param -= xp.multiply(direction, float(self.lr), out=scratch_a)


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (not AdamW), as torch.optim.Adam:

        g = grad + weight_decay * param
        m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g
        param -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, lr)
        self.betas = (betas[0], betas[1])
        self.eps = eps
        self.weight_decay = weight_decay

    def hyperparameters(self) -> dict:
        return {
            "lr": float(self.lr),
            "betas": [float(self.betas[0]), float(self.betas[1])],
            "eps": float(self.eps),
            "weight_decay": float(self.weight_decay),
        }

    def _set_hyperparameters(self, values: dict) -> None:
        for key in ("lr", "eps", "weight_decay"):
            if key in values:
                setattr(self, key, values[key])
        if "betas" in values:
            self.betas = tuple(values["betas"])

    def _update(self, name, param, grad, scratch_a, scratch_b) -> None:
        xp = self._xp
        beta1, beta2 = float(self.betas[0]), float(self.betas[1])
        state = self.state[name]
        if not state:
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        grad = self._decayed(param, grad, out=scratch_a)

        # exp_avg.lerp_(grad, 1 - beta1): torch's lerp with weight < 0.5 is self + weight * (end - self).
        xp.subtract(grad, exp_avg, out=scratch_b)
        scratch_b *= 1.0 - beta1
        exp_avg += scratch_b
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + (value * g) * g.
        exp_avg_sq *= beta2
        xp.multiply(grad, 1.0 - beta2, out=scratch_b)
        scratch_b *= grad
        exp_avg_sq += scratch_b

        # Bias corrections in Python floats, as torch does for a non-capturable step.
        step = self.step_count
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = float(self.lr) / bias_correction1
        # denom = sqrt(v) / sqrt(bc2) + eps  (grad in scratch_a is no longer needed after this)
        xp.sqrt(exp_avg_sq, out=scratch_b)
        scratch_b /= bias_correction2**0.5
        scratch_b += float(self.eps)
        # param.addcdiv_(exp_avg, denom, value=-step_size)
        xp.multiply(exp_avg, step_size, out=scratch_a)
        scratch_a /= scratch_b
        param -= scratch_a


OPTIMIZERS = ("sgd", "adam")


def build_optimizer(name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """An optimizer by name: "sgd" (uses `momentum`) or "adam" (default betas; `momentum` is not used)."""
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
