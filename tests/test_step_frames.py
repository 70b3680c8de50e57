"""The path of a training step, for a reader stepping through it: fit() calls the engine's train_step, which calls
the model's forward_step, which calls the first layer; no frame in between only passes the call on."""

import inspect

import numpy
import pytest

from nets.nn.models import build_model
from nets.optim import Adam
from nets.train.engine import NetsEngine
from nets.train.loop import DeviceData, fit
from nets.train.settings import Hyperparameters


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fit_reaches_the_first_layer_in_three_frames(backend, name):
    model = build_model(name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend, workers=1)
    rng = numpy.random.default_rng(1)
    images = rng.random((24, *model.input_shape), dtype=numpy.float32)
    labels = rng.integers(0, 10, 24)
    data = DeviceData(backend.asarray(images), backend.asarray(labels), backend.asarray(images[:8]),
                      backend.asarray(labels[:8]), image_width=28)
    first = model.layers[0][1]
    forward, paths = first.forward, []

    def recording(*args, **kwargs):
        names = []
        for frame in inspect.stack()[1:]:
            names.append(frame.function)
            if frame.function == "fit":
                break
        paths.append(names)
        return forward(*args, **kwargs)

    first.forward = recording
    hyper = Hyperparameters(optimizer="adam", lr=1e-3, batch_size=8, epochs=1)
    fit(engine, data, hyper, numpy.random.default_rng(0), log=None, graph="off")
    training = paths[:3]  # then the test set's predictions
    assert training == [["forward_step", "train_step", "fit"]] * 3
