"""A checkpoint back into use: its model built and loaded on a backend, its RNG state into a generator.

The optimizer state goes back through the engine (nets.train.engine), which owns the optimizer.
"""

from __future__ import annotations

import numpy

from nets.errors import first_line

from nets.checkpoint.record import Checkpoint, CheckpointError
from nets.nn.architecture import a_model
from nets.nn.models import build_model

__all__ = ["restore_model", "restore_rng"]


def restore_model(checkpoint: Checkpoint, backend, dtype=None, model_name: str | None = None):
    """The checkpoint's model, built on `backend` with its parameters loaded.

    dtype: None keeps the checkpoint's dtype; another dtype converts the parameters (an explicit request).
    model_name: the model the caller expects ("mlp"/"cnn"); a checkpoint of the other one raises CheckpointError.
    Building the model does not draw from backend.rng (a resumed run's RNG stays where it was).
    """
    held = checkpoint.model_name
    if model_name is not None and model_name != held:
        raise CheckpointError(f"the checkpoint holds {a_model(held)}, but {a_model(model_name)} was asked for; load "
                              f"it as {a_model(held)}, or use {a_model(model_name)} checkpoint.")
    model = build_model(checkpoint.model_config, backend=backend, dtype=numpy.dtype(dtype or checkpoint.dtype).name,
                        rng=numpy.random.default_rng(0))
    try:
        model.load_state_dict(checkpoint.params)
    except ValueError as error:
        raise CheckpointError(f"the checkpoint does not fit its own model: {first_line(error)}") from None
    return model


def restore_rng(checkpoint: Checkpoint, rng) -> None:
    """Set the numpy Generator `rng` to the checkpoint's saved state, so shuffling continues exactly. Both saved
    states (meta/rng_state, and meta/epoch_rng_state, which redraws the epoch under way) must be for `rng`'s kind
    of generator."""
    if checkpoint.rng_state is None:
        raise CheckpointError("the checkpoint holds no RNG state; it was saved without one.")
    bit_generator = rng.bit_generator
    kind = type(bit_generator).__name__
    for field, state in (("meta/rng_state", checkpoint.rng_state),
                         ("meta/epoch_rng_state", checkpoint.epoch_rng_state)):
        saved = None if state is None else state.get("bit_generator")
        if state is not None and saved != kind:
            raise CheckpointError(f"its {field} is a state of {saved}, but training shuffles with {kind}; "
                                  "resume from a checkpoint train.py wrote.")
    bit_generator.state = checkpoint.rng_state
