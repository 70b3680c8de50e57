"""Softmax cross-entropy on integer labels, with its gradient."""

from __future__ import annotations

from backend import array_module

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch and its gradient with respect to the logits.

    logits: (N, K) float; labels: (N,) integers in [0, K) on the same device.
    Returns (loss, dlogits): loss is a 0-d array of logits' dtype (not a Python float, so no
    host-device sync); dlogits (N, K) = (softmax(logits) - onehot(labels)) / N, logits' dtype.
    Uses log-sum-exp around the row maximum, so large logits neither overflow nor lose precision.
    """
    xp = array_module(logits, labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes); got shape {tuple(logits.shape)}.")
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"labels must be one integer per row of logits, shape ({logits.shape[0]},); got {tuple(labels.shape)}."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (class indices), not {labels.dtype}.")
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    label_column = labels.reshape(n, 1)
    # loss_i = log(sum_j exp(z_ij)) - z_i,label   with z = logits - row max
    per_sample = xp.log(sum_exp) - xp.take_along_axis(shifted, label_column, axis=1)
    loss = xp.asarray(per_sample.mean(), dtype=logits.dtype)
    dlogits = exp
    dlogits /= sum_exp
    xp.put_along_axis(dlogits, label_column, xp.take_along_axis(dlogits, label_column, axis=1) - 1, axis=1)
    dlogits /= n
    return loss, dlogits
