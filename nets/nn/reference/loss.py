"""Softmax cross-entropy on integer labels, and the running totals a training run reports.

    loss, dlogits = softmax_cross_entropy(logits, labels)     # Model.loss_and_gradients uses this
    totals = LossTotals(); dlogits = totals(logits, labels)    # the same, as a training step's loss head
"""

from __future__ import annotations

import numpy

from backend import array_module, is_device_array, to_numpy

__all__ = ["LossTotals", "check_logits_and_labels", "softmax_cross_entropy"]


def check_logits_and_labels(logits, labels) -> None:
    """ValueError, one line, unless logits is (N, K) and labels N integers in 0..K-1 (their values checked on the
    host only: on a device that would wait for the device)."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes); got shape {tuple(logits.shape)}.")
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"labels must be one integer per row of logits, shape ({logits.shape[0]},); got {tuple(labels.shape)}."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (class indices), not {labels.dtype}.")
    classes = logits.shape[1]
    if not is_device_array(labels) and labels.size:
        bad = numpy.flatnonzero((labels < 0) | (labels >= classes))
        if bad.size:
            raise ValueError(f"label {int(labels[bad[0]])} at index {int(bad[0])} is outside 0..{classes - 1}; "
                             f"labels must be class indices of the {classes} classes.")


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch and its gradient with respect to the logits.

    logits: (N, K) float; labels: (N,) integers in [0, K) on the same device.
    Returns (loss, dlogits): loss is a 0-d array of logits' dtype (not a Python float, so no
    host-device sync); dlogits (N, K) = (softmax(logits) - onehot(labels)) / N, logits' dtype.
    The row maximum is subtracted first (log-sum-exp), so large logits neither overflow nor lose precision.
    """
    xp = array_module(logits, labels)
    check_logits_and_labels(logits, labels)
    n, classes = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    onehot = labels.reshape(n, 1) == xp.arange(classes)
    # loss_i = log(sum_j exp(z_ij)) - z_i,label   with z = logits - row max
    per_sample = xp.log(sum_exp[:, 0]) - (shifted * onehot).sum(axis=1)
    loss = xp.asarray(per_sample.mean(), dtype=logits.dtype)
    dlogits = exp
    dlogits /= sum_exp
    dlogits -= onehot
    dlogits /= n
    return loss, dlogits


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
