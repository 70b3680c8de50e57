"""The path of a training step, for a reader stepping through it: fit() calls train_epoch(), which calls the engine's
train_step, which calls the model's forward_step, which calls the first layer. On every path (one thread, CPU worker
threads, a step captured as a CUDA graph) at most 4 frames lie between fit and the first layer's forward, and none
of them only passes the call on."""

import inspect
import threading

import numpy
import pytest

from nets.nn.models import build_model
from nets.optim import Adam
from nets.train.engine import NetsEngine
from nets.train.loop import DeviceData, fit
from nets.train.settings import Hyperparameters

MAX_FRAMES = 4


def frames_to_fit(skip=1):
    """The functions between fit and the caller of this (innermost first), or the whole stack of a worker thread
    down to its entry when fit is not on it."""
    names = []
    for frame in inspect.stack()[skip + 1:]:
        if frame.function == "fit":
            return names, True
        names.append(frame.function)
    return names, False


def recorded_paths(backend, name, workers, graph, batch_size=8):
    """Train one epoch of 3 full batches and record the frames above every call of the first layer's forward, per
    thread: [(thread name, frames innermost first, whether fit is on that thread's stack)]."""
    model = build_model(name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend, workers=workers)
    rng = numpy.random.default_rng(1)
    images = rng.random((3 * batch_size, *model.input_shape), dtype=numpy.float32)
    labels = rng.integers(0, 10, 3 * batch_size)
    data = DeviceData(backend.asarray(images), backend.asarray(labels), backend.asarray(images[:8]),
                      backend.asarray(labels[:8]), image_width=28)
    paths = []
    layers = [model.layers[0][1]] + [replica.layers[0][1] for replica in getattr(engine.parallel, "replicas", [])]
    for layer in layers:
        forward = layer.forward

        def recording(*args, forward=forward, **kwargs):
            if kwargs.get("train", args[1] if len(args) > 1 else True):
                paths.append((threading.current_thread().name, *frames_to_fit()))
            return forward(*args, **kwargs)

        layer.forward = recording
    hyperparameters = Hyperparameters(optimizer="adam", lr=1e-3, batch_size=batch_size, epochs=1)
    fit(engine, data, hyperparameters, numpy.random.default_rng(0), log=None, graph=graph)
    return paths


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_one_thread_reaches_the_first_layer_in_three_frames(backend, name):
    paths = recorded_paths(backend, name, workers=1, graph="off")
    assert paths == [("MainThread", ["forward_step", "train_step", "train_epoch"], True)] * 3


def test_cpu_workers_reach_the_first_layer_in_four_frames():
    from backend import get_backend

    paths = recorded_paths(get_backend("cpu"), "cnn", workers=2, graph="off", batch_size=64)
    caller = [path for path in paths if path[0] == "MainThread"]
    workers = [path for path in paths if path[0] != "MainThread"]
    # the calling thread runs the first share itself; a worker thread's own stack starts at its share
    assert caller == [("MainThread", ["forward_step", "gradients", "train_step", "train_epoch"], True)] * 3
    assert len(workers) == 3 and all(not on_fit for _, _, on_fit in workers)
    for _, frames, _ in workers:
        assert frames[:2] == ["forward_step", "_share_gradients"] and frames[2] == "_serve", frames
    assert max(len(frames) for _, frames, on_fit in paths if on_fit) <= MAX_FRAMES


def test_a_captured_step_runs_eagerly_once_in_three_frames_then_replays_without_python(standin_gpu):
    paths = recorded_paths(standin_gpu, "mlp", workers=1, graph="on")
    eager = [path for path in paths if "capture" not in path[1]]
    recorded = [path for path in paths if "capture" in path[1]]
    # 3 full batches: the warm-up runs eagerly from train_epoch, the second is recorded by the capture (no step a
    # reader steps through: nothing runs), and every replay after runs no Python of the layers at all
    assert eager == [("MainThread", ["forward_step", "train_step", "train_epoch"], True)]
    assert len(recorded) == 1
