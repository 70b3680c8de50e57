"""Inference over many images, in batches, for any predictor: a nets Model, the nets or the PyTorch engine.

    classes = predict_classes(model, images)             # (N,) int64 on the host
    probabilities = predict_probabilities(model, images) # (N, K) float64 on the host
    correct = count_correct(engine, images, labels)      # an int: hits add up on the device, one read at the end
    loss, correct = loss_and_correct(engine, images, labels)   # an engine's mean cross-entropy too, read once

A predictor has `backend` (its array calls: asarray, to_numpy), `input_shape`, `dtype` and `predict(x)`, which returns
the logits (B, K) of a batch on its device in evaluation mode. `images` are either on the host, in any MNIST
layout, uint8 or float in [0, 1] (each batch is prepared by nets.data.datasets.to_model_input and moved on
its own), or already the model's input on its device (a training run's test set).
"""

from __future__ import annotations

import numpy

from nets.data.datasets import to_model_input

__all__ = ["BATCH_SIZE", "count_correct", "logits_in_batches", "loss_and_correct", "predict_classes",
           "predict_probabilities"]

BATCH_SIZE = 1000


def logits_in_batches(predictor, images, batch_size: int = BATCH_SIZE):
    """The predictor's logits of each batch of `images`, one (B, K) device array after another."""
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, got {batch_size}.")
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if isinstance(batch, numpy.ndarray):  # host pixels (on the CPU also a prepared test set: then a no-op)
            batch = predictor.backend.asarray(to_model_input(batch, predictor.input_shape, predictor.dtype))
        yield predictor.predict(batch)


def predict_classes(predictor, images, batch_size: int = BATCH_SIZE) -> numpy.ndarray:
    """The most probable class of each image: (N,) int64 on the host, one copy per batch."""
    parts = [predictor.backend.to_numpy(logits.argmax(1))
             for logits in logits_in_batches(predictor, images, batch_size)]
    return numpy.concatenate(parts).astype(numpy.int64, copy=False) if parts else numpy.zeros(0, dtype=numpy.int64)


def predict_probabilities(predictor, images, batch_size: int = BATCH_SIZE) -> numpy.ndarray:
    """Softmax class probabilities of each image: (N, K) float64 on the host."""
    parts = [predictor.backend.to_numpy(logits).astype(numpy.float64)
             for logits in logits_in_batches(predictor, images, batch_size)]
    if not parts:
        return numpy.zeros((0, 0))
    logits = numpy.concatenate(parts)
    exponentials = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def count_correct(predictor, images, labels, batch_size: int = BATCH_SIZE) -> int:
    """How many of `images` the predictor classifies as `labels` (on the same device as the images' batches);
    the hits add up on the device and are read once, at the end."""
    total = None
    for start, logits in zip(range(0, len(labels), batch_size), logits_in_batches(predictor, images, batch_size)):
        hits = (logits.argmax(1) == labels[start:start + batch_size]).sum()
        total = hits if total is None else total + hits
    return 0 if total is None else int(predictor.backend.to_numpy(total))


def loss_and_correct(engine, images, labels, batch_size: int = BATCH_SIZE) -> tuple[float, int]:
    """(mean softmax cross-entropy, correct predictions) of a training engine (nets/train/engine.py's Engine) on
    `images` and their `labels`, on the device: the sums add up there and are read once, at the end."""
    total = engine.backend.zeros(2, "float64")
    for start, logits in zip(range(0, len(labels), batch_size), logits_in_batches(engine, images, batch_size)):
        engine.add_loss_and_hits(logits, labels[start:start + batch_size], total)
    loss_sum, hits = engine.backend.to_numpy(total).tolist()
    return loss_sum / max(len(labels), 1), int(hits)
