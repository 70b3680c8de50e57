"""A reference model and optimizer (nets/nn/reference/) as the training engine drives the fast ones: what
`train.py --layers reference` runs. The reference stays plain maths; the plumbing a training run needs (a loss head
that keeps running totals, a learning rate planned per step, the checkpoint's optimizer state) lives here.

    engine = NetsEngine(ReferenceForTraining(model), PlannedReference(optimizer, model.gradients), backend)
"""

from __future__ import annotations

import numpy

from backend import to_numpy

from nets.nn.reference.loss import softmax_cross_entropy
from nets.nn.reference.optim import load_optimizer_state, optimizer_state

__all__ = ["LossTotals", "PlannedReference", "ReferenceForTraining"]


class LossTotals:
    """softmax_cross_entropy as a training step's loss head: returns dlogits and adds the batch's summed loss and
    correct predictions to running totals kept on the device, read with totals() (one host sync)."""

    def __init__(self):
        self.loss_sum = self.hits = None

    def __call__(self, logits, labels):
        """logits (N, K), labels (N,) -> dlogits (N, K)."""
        loss, dlogits = softmax_cross_entropy(logits, labels)
        loss_sum = loss.astype(numpy.float64) * len(labels)
        hits = (logits.argmax(axis=1) == labels).sum()
        if self.loss_sum is None:
            self.loss_sum, self.hits = loss_sum, hits
        else:
            self.loss_sum, self.hits = self.loss_sum + loss_sum, self.hits + hits
        return dlogits

    def totals(self) -> tuple[float, int]:
        """(sum of per-sample losses, correct predictions) since the last reset."""
        if self.loss_sum is None:
            return 0.0, 0
        return float(to_numpy(self.loss_sum)), int(to_numpy(self.hits))

    def reset(self) -> None:
        self.loss_sum = self.hits = None


class ReferenceForTraining:
    """A nets.nn.reference.models.ReferenceModel with the calls NetsEngine makes of a fast model (nets/nn/models.py):
    one thread, a plain input array, LossTotals as the loss head. Everything else is the model's own."""

    layer_set = "reference"  # train.py --layers reference
    min_per_worker = None  # one thread: a debugger steps through every call of a training run

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):  # name, layers, backend, dtype, input_shape, classes, parameters, state_dict, ...
        return getattr(self.model, name)

    def forward_step(self, x, train=True):
        return self.model.forward(x, train=train)

    def backward_step(self, dlogits, need_input_grad=False):
        return self.model.backward(dlogits)

    def predict_step(self, x):
        return self.model.predict(x)

    def input_with_ones(self, n):
        return None  # a batch is a plain (N, *input_shape) array

    def loss_head(self):
        return LossTotals()


class PlannedReference:
    """A reference optimizer (nets/nn/reference/optim.py) with the calls NetsEngine makes of a fast one: plan() gives
    the learning rate of each coming step, step() takes the model's gradients and the next planned rate (the
    optimizer's own lr past the plan), and state_dict() is the checkpoint's layout."""

    coefficient_table = None  # the fast optimizers keep their learning rates in a device table; none here
    capturable = False

    def __init__(self, optimizer, gradients):
        self.optimizer, self.gradients = optimizer, gradients
        self._planned, self._base_lr = [], optimizer.lr

    def plan(self, learning_rates, capacity=0) -> None:
        self._planned = [float(lr) for lr in reversed(learning_rates)]

    def step(self) -> None:
        self.optimizer.lr = self._planned.pop() if self._planned else self._base_lr
        try:
            self.optimizer.step(self.gradients())
        finally:
            self.optimizer.lr = self._base_lr  # the optimizer's own lr, as its state_dict keeps it

    def steps_planned_ahead(self) -> int:
        return len(self._planned)

    def state_dict(self) -> dict:
        return optimizer_state(self.optimizer)

    def load_state_dict(self, state_dict) -> None:
        load_optimizer_state(self.optimizer, state_dict)
        self._planned, self._base_lr = [], self.optimizer.lr
