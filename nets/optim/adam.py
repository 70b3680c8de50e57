"""Adam with L2 weight decay added to the gradient, as torch.optim.Adam, over the flat buffer."""

from __future__ import annotations

import math

from nets.optim.base import Optimizer
from nets.validate import Invalid, real

__all__ = ["Adam"]


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient (not AdamW), as torch.optim.Adam:

        g = grad + weight_decay * param
        m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g
        param -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    computed as param -= alpha_t * m / (sqrt(v) + eps_t) with alpha_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    and eps_t = eps * sqrt(1 - beta2**t), the same quantity with one operation fewer (equal to torch's to
    rounding); alpha_t and eps_t are the device coefficients of step t.
    """

    name = "adam"
    state_names = ("exp_avg", "exp_avg_sq")
    checks = {**Optimizer.checks, "eps": lambda value, name: real(value, name, low=0),
              "betas": lambda value, name: _check_betas(value, name)}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, capturable=False):
        self.check_hyperparameters({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        super().__init__(params, lr, capturable)
        self.betas = (betas[0], betas[1])
        self.eps = eps
        self.weight_decay = weight_decay
        self._create_state()

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

    def _host_coefficients(self, lr, step):
        beta1, beta2 = float(self.betas[0]), float(self.betas[1])
        root_correction2 = math.sqrt(1 - beta2**step)
        return [lr * root_correction2 / (1 - beta1**step), float(self.eps) * root_correction2]

    def _update(self, group, grad, coefficients) -> None:
        xp = self._xp
        alpha, eps = coefficients
        beta1, beta2 = float(self.betas[0]), float(self.betas[1])
        exp_avg, exp_avg_sq = group.state["exp_avg"], group.state["exp_avg_sq"]
        scratch_a, scratch_b = group.scratch
        grad = self._decayed(group, grad)  # in scratch a when there is weight decay
        # exp_avg.lerp_(grad, 1 - beta1): torch's lerp with weight < 0.5 is self + weight * (end - self).
        xp.subtract(grad, exp_avg, out=scratch_b)
        scratch_b *= 1.0 - beta1
        exp_avg += scratch_b
        # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): self + (value * g) * g.
        exp_avg_sq *= beta2
        xp.multiply(grad, 1.0 - beta2, out=scratch_b)
        scratch_b *= grad
        exp_avg_sq += scratch_b
        # param -= alpha * exp_avg / (sqrt(exp_avg_sq) + eps); grad (maybe in scratch a) is not needed now
        xp.sqrt(exp_avg_sq, out=scratch_b)
        scratch_b += eps
        xp.multiply(exp_avg, alpha, out=scratch_a)
        scratch_a /= scratch_b
        group.values -= scratch_a


def _check_betas(betas, name: str) -> None:
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise Invalid(name, betas, "two numbers in [0, 1)")
    for index, beta in enumerate(betas):
        real(beta, f"{name}[{index}]", low=0, high=1, high_open=True)
