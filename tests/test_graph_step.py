"""The training step captured as a CUDA graph (nets/train/graph.py), on the strict stand-in: replayed steps equal
eager ones bit for bit, one graph launch per full batch, and a step that would not replay right fails to capture."""

import numpy
import pytest

import backend as backend_module
from backend import graphs
from backend.standin import StrictCupy, standin_backend
from backend.standin.capture import CaptureAllocationError
from nets.data.batches import EpochOrder
from nets.nn.models import build_model
from nets.optim import build_optimizer
from nets.train.engine import NetsEngine
from nets.train.graph import GraphError
from nets.train.interrupt import Interrupted
from nets.train.loop import DeviceData, fit
from nets.train.settings import Hyperparameters

BATCH = 8
FULL_BATCHES = 16
COUNT = BATCH * FULL_BATCHES + 4  # 17 steps an epoch, the last a partial batch of 4


def make_engine(gpu, model, optimizer="adam"):
    net = build_model(model, backend=gpu, dtype="float32", rng=numpy.random.default_rng(0))
    return NetsEngine(net, build_optimizer(optimizer, net.parameters(), lr=0.01, momentum=0.9), gpu)


def run(gpu, model, optimizer, graph, *, engine=None, rng=None, state=None, stop_after_steps=None):
    """fit() for 2 epochs on a fixed small dataset (flips and shifts, one-cycle); returns (engine, state, lines said)."""
    data_rng = numpy.random.default_rng(5)
    shape = (COUNT, 1, 28, 28) if model == "cnn" else (COUNT, 784)
    data = DeviceData(gpu.asarray(data_rng.random(shape, dtype=numpy.float32)),
                      gpu.asarray(data_rng.integers(0, 10, COUNT)),
                      gpu.asarray(data_rng.random((16, *shape[1:]), dtype=numpy.float32)),
                      gpu.asarray(data_rng.integers(0, 10, 16)), image_width=28)
    engine = engine or make_engine(gpu, model, optimizer)
    hyper = Hyperparameters(optimizer=optimizer, lr=0.01, batch_size=BATCH, epochs=2, schedule="onecycle",
                            momentum=0.9 if optimizer == "sgd" else 0.0, augment="flip+shift:1")
    said = []
    state = fit(engine, data, hyper, rng or numpy.random.default_rng(3), state=state, log=said.append,
                stop_after_steps=stop_after_steps, graph=graph)
    return engine, state, said


def weights_and_moments(engine):
    saved = engine.state()
    arrays = dict(saved.params)
    for state_name, per_parameter in saved.optimizer_state["state"].items():
        arrays.update({f"{state_name}/{name}": value for name, value in per_parameter.items()})
    return arrays


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_replayed_steps_equal_eager_steps_bit_for_bit(standin_gpu, model, optimizer):
    """31 replays across an epoch boundary (a new order and a new augmentation draw), under the one-cycle schedule
    (a new learning rate every step): a learning rate, a batch or a move baked into the graph would differ."""
    eager_engine, eager_state, _ = run(standin_backend(), model, optimizer, "off")
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    engine, state, said = run(standin_gpu, model, optimizer, "on")
    assert counter.since(mark).graph_launches == 2 * FULL_BATCHES - 1  # every full batch but the warm-up
    assert any(line.startswith("training step captured as a CUDA graph (") for line in said), said
    eager, replayed = weights_and_moments(eager_engine), weights_and_moments(engine)
    assert eager.keys() == replayed.keys() and len(eager) > 8
    for name in eager:
        numpy.testing.assert_array_equal(replayed[name], eager[name], err_msg=name)
    assert engine.optimizer.step_count == eager_engine.optimizer.step_count == 2 * (FULL_BATCHES + 1)
    for record, eager_record in zip(state.history, eager_state.history):
        assert (record["train_loss"], record["train_accuracy"], record["test_accuracy"]) == (
            eager_record["train_loss"], eager_record["train_accuracy"], eager_record["test_accuracy"])


def test_a_run_stopped_mid_epoch_and_resumed_with_the_graph_equals_the_whole_run(standin_gpu):
    whole, _, _ = run(standin_backend(), "cnn", "adam", "on")
    first, rng = make_engine(standin_gpu, "cnn"), numpy.random.default_rng(3)
    with pytest.raises(Interrupted) as stopped:
        run(standin_gpu, "cnn", "adam", "on", engine=first, rng=rng, stop_after_steps=FULL_BATCHES + 6)
    where = stopped.value.state
    assert (where.epoch, where.step_in_epoch) == (1, 5)
    # a new engine takes the saved state in place, as a resume does, and the run goes on with the same RNG
    resumed = make_engine(standin_backend(), "cnn")
    moments = resumed.optimizer.groups[0].state["exp_avg"]
    resumed.load_state(first.state())
    assert resumed.optimizer.groups[0].state["exp_avg"] is moments
    engine, _, _ = run(resumed.io, "cnn", "adam", "on", engine=resumed, rng=rng, state=where)
    expected, got = weights_and_moments(whole), weights_and_moments(engine)
    for name in expected:
        numpy.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def full_batch_step(gpu, model="mlp", optimizer="adam"):
    """An engine, and the full-batch step fit() captures, over a small dataset already on the device."""
    engine = make_engine(gpu, model, optimizer)
    net = engine.model
    rng = numpy.random.default_rng(1)
    images = gpu.asarray(rng.random((4 * BATCH, *net.input_shape), dtype=numpy.float32))
    labels = gpu.asarray(rng.integers(0, 10, 4 * BATCH))
    order = EpochOrder(gpu, 4 * BATCH, BATCH)
    order.start(numpy.arange(4 * BATCH))

    def step():
        engine.train_step(*engine.batch(images, labels, order.next_rows()))

    return engine, order, step


def test_a_replayed_step_is_one_graph_launch_and_nothing_else(standin_gpu):
    engine, order, step = full_batch_step(standin_gpu)
    said = []
    graphed = engine.graphed(step, "on", note=said.append)
    engine.plan([1e-3] * 4, capacity=4)
    counter = standin_gpu.xp.counter
    with graphed.on_stream():
        mark = counter.mark()
        graphed()  # warm-up, eager, its products through the cuBLAS handle the capture uses (kernels loaded first)
        products = [event.name for event in counter.since(mark).where("gemm")]
        assert products and set(products) == {"cublasSgemm_v2"}, products
        graphed()  # captured, then launched
        order.start(numpy.arange(4 * BATCH), start_image=2 * BATCH)
        mark = counter.mark()
        graphed()
        tally = counter.since(mark)
    assert (tally.graph_launches, tally.host_calls, tally.launches) == (1, 1, 0)
    assert tally.syncs == tally.allocations == tally.transfers == 0
    assert said == [f"training step captured as a CUDA graph ({graphed.kernels} kernels)"]
    assert graphed.kernels == 38 + 2 + 2 + 2  # the MLP's step, the lr at its device index, the batch, its rows


def test_a_step_captured_before_its_buffers_exist_is_refused(standin_gpu):
    """Capturing the very first step would record the allocation of every buffer: refused (and why a GraphedStep
    warms up eagerly first)."""
    engine, _, step = full_batch_step(standin_gpu)
    engine.optimizer.capturable = True
    engine.plan([1e-3] * 4)
    stream = graphs.side_stream(standin_gpu.xp)
    with graphs.on_stream(standin_gpu.xp, stream), pytest.raises(CaptureAllocationError, match="default memory pool"):
        graphs.capture(standin_gpu.xp, stream, step)


def test_a_step_that_reads_back_or_calls_cupy_matmul_cannot_be_captured(standin_gpu, monkeypatch):
    engine, _, step = full_batch_step(standin_gpu)
    engine.optimizer.capturable = True
    engine.plan([1e-3] * 4)
    step()  # warm-up: buffers and tables made
    stream = graphs.side_stream(standin_gpu.xp)
    with graphs.on_stream(standin_gpu.xp, stream):
        with pytest.raises(RuntimeError, match="so D2H transfers are disallowed"):
            graphs.capture(standin_gpu.xp, stream, lambda: (step(), engine.totals()))
        monkeypatch.setattr(graphs, "direct_stream", lambda: None)  # the layers' products through cupy.matmul
        with pytest.raises(NotImplementedError, match="calling cuBLAS API during stream capture"):
            graphs.capture(standin_gpu.xp, stream, step)


def test_a_capture_that_fails_runs_eager_under_auto_and_stops_the_run_under_on(standin_gpu, monkeypatch):
    def refuse(*arguments):
        raise RuntimeError("no graph today")

    monkeypatch.setattr(graphs, "capture", refuse)
    engine, _, step = full_batch_step(standin_gpu)
    said = []
    graphed = engine.graphed(step, "auto", note=said.append)
    engine.plan([1e-3] * 4, capacity=4)
    with graphed.on_stream():
        for _ in range(3):
            graphed()
    assert engine.optimizer.step_count == 3
    assert said == ["training step runs eager: capturing it as a CUDA graph failed (no graph today)"]
    strict = full_batch_step(standin_gpu)[0].graphed(step, "on")
    with strict.on_stream(), pytest.raises(GraphError, match=r"could not be captured .*no graph today.*--graph off"):
        strict()
        strict()


def test_graph_on_needs_the_gpu():
    engine, _, step = full_batch_step(backend_module.get_backend("cpu"))
    assert engine.graphed(step, "auto") is None and engine.graphed(step, "off") is None
    with pytest.raises(ValueError, match="NumPy runs no CUDA graphs"):
        engine.graphed(step, "on")


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_twenty_captured_steps_match_twenty_eager_steps_on_the_gpu(device_backend, model):
    """On CuPy the captured products are cuBLAS calls of our own, not CuPy's, so the two runs agree to float32
    rounding (SGD, whose update is linear in the gradient, keeps rounding differences at that size); on the
    stand-in they agree bit for bit."""
    runs = []
    for mode in ("off", "on"):
        engine, order, step = full_batch_step(device_backend, model, optimizer="sgd")
        engine.optimizer.capturable = True
        graphed = engine.graphed(step, mode)
        engine.plan([0.01] * 20, capacity=20)
        xp = device_backend.xp
        with graphed.on_stream() if graphed is not None else graphs.on_stream(xp, graphs.side_stream(xp)):
            for step_number in range(20):
                if step_number % 4 == 0:  # a new epoch of 4 batches
                    order.start(numpy.random.default_rng(step_number).permutation(4 * BATCH))
                (graphed or step)()
        runs.append(weights_and_moments(engine))
    eager, replayed = runs
    for name in eager:
        if isinstance(device_backend.xp, StrictCupy):
            numpy.testing.assert_array_equal(replayed[name], eager[name], err_msg=name)
        else:
            numpy.testing.assert_allclose(replayed[name], eager[name], rtol=1e-4, atol=1e-6, err_msg=name)
