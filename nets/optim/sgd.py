"""SGD with momentum, dampening, L2 weight decay and Nesterov, as torch.optim.SGD, over the flat buffer."""

from __future__ import annotations

from nets.optim.base import Optimizer
from nets.validate import Invalid, real

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, L2 weight decay and Nesterov,
    as torch.optim.SGD:

        g = grad + weight_decay * param
        buf = g (first step), then buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf
        param -= lr * g

    The first step computes buf = 0 * buf + 1 * g (buf starts as zeros) with the kernels every later step launches,
    so a step captured as a CUDA graph after one eager step launches no kernel that step did not.
    """

    name = "sgd"
    state_names = ("momentum_buffer",)
    checks = {**Optimizer.checks, "momentum": lambda value, name: real(value, name, low=0, high=1, high_open=True),
              "dampening": lambda value, name: real(value, name, low=0, high=1),
              "nesterov": lambda value, name: _check_flag(value, name)}

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, capturable=False):
        self.check_hyperparameters({"lr": lr, "momentum": momentum, "dampening": dampening,
                                    "weight_decay": weight_decay, "nesterov": nesterov})
        super().__init__(params, lr, capturable)
        self.momentum = momentum
        self.dampening = dampening
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self._buffer_started = False  # torch starts the momentum buffer as a copy of the first gradient
        self._create_state()

    @classmethod
    def check_hyperparameters(cls, values: dict) -> None:
        super().check_hyperparameters(values)
        if values.get("nesterov") and (values.get("momentum", 0) <= 0 or values.get("dampening", 0) != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _active_state_names(self):
        return self.state_names if self.momentum != 0.0 else ()

    def _has_state(self):
        return self._buffer_started and self.momentum != 0.0

    def _loaded(self, had_state):
        self._buffer_started = had_state

    def replayed_step(self) -> None:
        super().replayed_step()
        self._buffer_started = True

    def _host_state(self):
        return self.step_count, self._buffer_started

    def _set_host_state(self, state) -> None:
        self.step_count, self._buffer_started = state

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

    def _host_coefficients(self, lr, step):
        return [lr]

    def step(self, grads=None) -> None:
        super().step(grads)
        self._buffer_started = True

    def _update(self, group, grad, coefficients) -> None:
        xp = self._xp
        (lr,) = coefficients
        momentum = float(self.momentum)
        direction = self._decayed(group, grad)
        scratch_a, scratch_b = group.scratch
        if momentum != 0.0:
            buf = group.state["momentum_buffer"]
            started = self._buffer_started
            buf *= momentum if started else 0.0  # zeros before the first step: 0 * buf + g is g, as torch starts it
            if float(self.dampening) == 0.0:
                buf += direction
            else:
                buf += xp.multiply(direction, 1.0 - float(self.dampening) if started else 1.0, out=scratch_b)
            if self.nesterov:
                xp.multiply(buf, momentum, out=scratch_b)
                scratch_b += direction
                direction = scratch_b
            else:
                direction = buf
        # direction is the raw grad, scratch a (decayed), scratch b (nesterov) or buf: scratch a is free now
        group.values -= xp.multiply(direction, lr, out=scratch_a)


def _check_flag(value, name: str) -> None:
    if not isinstance(value, bool):
        raise Invalid(name, value, "true or false")
