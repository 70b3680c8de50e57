"""Softmax cross-entropy on integer labels: the loss every model is trained on.

    loss, dlogits = softmax_cross_entropy(logits, labels)     # ReferenceModel.loss_and_gradients uses this
"""

from __future__ import annotations

import numpy

from backend import array_module, is_device_array

__all__ = ["check_logits_and_labels", "softmax_cross_entropy"]


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
