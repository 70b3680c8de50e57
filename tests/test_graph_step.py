"""The training step captured as a CUDA graph (nets/train/graph.py), on the strict stand-in: replayed steps equal
eager ones bit for bit, one graph launch per full batch, and a step that would not replay right fails to capture."""

import contextlib

import numpy
import pytest

import backend as backend_module
from backend import graphs
from backend.standin import StrictCupy, standin_backend
from backend.standin.capture import CaptureAllocationError
from nets.data.batches import EpochOrder
from nets.nn.models import build_model
from nets.optim import SGD, build_optimizer
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
    """fit() for 2 epochs on a fixed small dataset (flips and shifts, one-cycle).

    Returns (engine, state, lines said)."""
    data_rng = numpy.random.default_rng(5)
    shape = (COUNT, 1, 28, 28) if model == "cnn" else (COUNT, 784)
    data = DeviceData(gpu.asarray(data_rng.random(shape, dtype=numpy.float32)),
                      gpu.asarray(data_rng.integers(0, 10, COUNT)),
                      gpu.asarray(data_rng.random((16, *shape[1:]), dtype=numpy.float32)),
                      gpu.asarray(data_rng.integers(0, 10, 16)), image_width=28)
    engine = engine or make_engine(gpu, model, optimizer)
    hyperparameters = Hyperparameters(optimizer=optimizer, lr=0.01, batch_size=BATCH, epochs=2, schedule="onecycle",
                            momentum=0.9 if optimizer == "sgd" else 0.0, augment="flip+shift:1")
    said = []
    state = fit(engine, data, hyperparameters, rng or numpy.random.default_rng(3), state=state, log=said.append,
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
    engine, _, _ = run(resumed.backend, "cnn", "adam", "on", engine=resumed, rng=rng, state=where)
    expected, got = weights_and_moments(whole), weights_and_moments(engine)
    for name in expected:
        numpy.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def full_batch_step(gpu, model="mlp", optimizer="adam", engine=None):
    """An engine, and the full-batch step fit() captures, over a small dataset already on the device."""
    engine = engine or make_engine(gpu, model, optimizer)
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
    warms up eagerly first). Another engine's step loads the kernels first, so that the allocation is what fails."""
    full_batch_step(standin_gpu)[2]()
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
    stream = graphs.side_stream(standin_gpu.xp)
    with graphs.on_stream(standin_gpu.xp, stream):
        with graphs.direct_cublas(standin_gpu.xp, stream):
            step()  # warm-up: buffers and tables made, kernels loaded
        with pytest.raises(RuntimeError, match="so D2H transfers are disallowed"):
            graphs.capture(standin_gpu.xp, stream, lambda: (step(), engine.totals()))
        monkeypatch.setattr(graphs, "direct_path", lambda: None)  # the layers' products through cupy.matmul
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


def twenty_steps(device_backend, model, mode):
    """Weights and moments after 20 SGD steps (5 epochs of 4 batches) run as `mode` says: "on", captured and
    replayed; "direct", eagerly with every product through the direct cuBLAS path of the stream, as the captured
    step makes them; "off", eagerly through CuPy's matmul."""
    engine, order, step = full_batch_step(device_backend, model, optimizer="sgd")
    engine.optimizer.capturable = True
    graphed = engine.graphed(step, "on" if mode == "on" else "off")
    engine.plan([0.01] * 20, capacity=20)
    xp = device_backend.xp
    stream = graphs.side_stream(xp)
    with graphed.on_stream() if graphed is not None else graphs.on_stream(xp, stream):
        with graphs.direct_cublas(xp, stream) if mode == "direct" else contextlib.nullcontext():
            for step_number in range(20):
                if step_number % 4 == 0:  # a new epoch of 4 batches
                    order.start(numpy.random.default_rng(step_number).permutation(4 * BATCH))
                (graphed or step)()
    return weights_and_moments(engine)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_twenty_captured_steps_equal_twenty_eager_steps_through_the_same_cublas_calls(device_backend, model):
    """The eager reference multiplies through the direct path, as the graph does (the same cuBLAS routine, the same
    kind of handle and workspace), and every other kernel is CuPy's in both: bit for bit, on the stand-in and on a
    GPU. A difference here is a fault of the capture, not rounding."""
    eager, replayed = (twenty_steps(device_backend, model, mode) for mode in ("direct", "on"))
    assert eager.keys() == replayed.keys()
    for name in eager:
        numpy.testing.assert_array_equal(replayed[name], eager[name], err_msg=name)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_twenty_captured_steps_stay_close_to_twenty_steps_through_cupys_matmul(device_backend, model):
    """--graph off multiplies through CuPy's cublasGemmEx on CuPy's handle, which may pick other kernels (split-K)
    than the graph's cublasSgemm: an ulp apart can flip a ReLU or move a pooling argmax, so on a GPU the two agree
    to a looser tolerance; on the stand-in, where both are NumPy's product, bit for bit."""
    eager, replayed = (twenty_steps(device_backend, model, mode) for mode in ("off", "on"))
    for name in eager:
        if isinstance(device_backend.xp, StrictCupy):
            numpy.testing.assert_array_equal(replayed[name], eager[name], err_msg=name)
        else:
            numpy.testing.assert_allclose(replayed[name], eager[name], rtol=1e-3, atol=1e-5, err_msg=name)


class CopyingFirstStepSGD(SGD):
    """SGD whose first step copies the gradient into the momentum buffer and whose later steps scale it and add
    (torch's formula read literally): a step captured after one eager step launches a kernel that step never ran."""

    def _update(self, group, grad, coefficients):
        if self.momentum == 0.0 or self._buffer_started:
            super()._update(group, grad, coefficients)
            return
        buffer = group.state["momentum_buffer"]
        buffer[...] = grad
        group.values -= self._xp.multiply(buffer, coefficients[0], out=group.scratch[0])


@pytest.mark.parametrize("optimizer", [SGD, CopyingFirstStepSGD])
def test_a_step_is_captured_only_once_its_warm_up_launched_every_kernel_it_will(standin_gpu, optimizer):
    """The stand-in refuses a kernel first launched inside a capture (CuPy would compile and load it there): a step
    whose first call differs from the later ones cannot be captured after one eager call. SGD with momentum makes
    its first step with the kernels of the later ones, and is captured."""
    net = build_model("mlp", backend=standin_gpu, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(net, optimizer(net.parameters(), lr=0.01, momentum=0.9), standin_gpu)
    _, _, step = full_batch_step(standin_gpu, engine=engine)
    graphed = engine.graphed(step, "on")
    engine.plan([1e-3] * 4, capacity=4)
    with graphed.on_stream():
        graphed()
        if optimizer is SGD:
            graphed()
            assert graphed.kernels is not None
            return
        with pytest.raises(GraphError, match=r"\(cupy\.multiply \(float32, float, ->, float32\) is launched for the "
                                             r"first time while the stream captures"):
            graphed()


@pytest.mark.parametrize("stage", ["lookup", "create", "layout"])
@pytest.mark.parametrize("mode", ["auto", "on"])
def test_a_cublas_set_up_that_fails_runs_the_step_eagerly_or_stops_before_it(standin_gpu, monkeypatch, stage, mode):
    """The handle is set up before any of the step's device work: under --graph on a failure stops the run before the
    step moved its rows; under auto the step runs eagerly, then and from then on. A refused product is known only
    once the warm-up step ran (CuPy made it), so --graph on stops after that step."""
    from backend import cublas

    library = standin_gpu.xp.emulated_cublas()
    if stage == "lookup":
        monkeypatch.setattr(standin_gpu.xp, "emulated_cublas", lambda: (_ for _ in ()).throw(ImportError("no cuBLAS")))
    elif stage == "create":
        monkeypatch.setattr(library, "cublasCreate_v2", lambda handle: 3)
    else:
        monkeypatch.setattr(cublas, "gemm_arguments", lambda a, b, out: (_ for _ in ()).throw(ValueError("refused")))
    engine, _, step = full_batch_step(standin_gpu)
    said = []
    graphed = engine.graphed(step, mode, note=said.append)
    engine.plan([1e-3] * 4, capacity=4)
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    if mode == "on":  # a handle that cannot be set up stops the run before its first step; a refused product after
        with pytest.raises(GraphError, match=r"could not be captured as a CUDA graph \(cuBLAS (could not be set up|"
                                             r"refused a product of the step): .*; run with --graph off\."):
            with graphed.on_stream():
                for _ in range(2):
                    graphed()
        assert engine.optimizer.step_count == (1 if stage == "layout" else 0)
        return
    with graphed.on_stream():
        for _ in range(3):
            graphed()
    assert engine.optimizer.step_count == 3 and counter.since(mark).graph_launches == 0
    assert len(said) == 1, said
    assert said[0].startswith("training step runs eager: capturing it as a CUDA graph failed (cuBLAS"), said

