"""Kernel-launch budgets of the GPU step, counted by the strict CuPy stand-in (no GPU needed).

A training step of these small models costs what its launches cost on a GPU, and the counts are
deterministic, so they are held here: at batch 128, Adam, float32, through the engine train.py uses,
at most 40 launches per MLP step and 70 per CNN step (125 and 210 before the GPU rework, counted by this
stand-in; the issue estimated 123 and 208), at most 18 for a CNN prediction, and no host sync, no
host/device copy and no allocation inside a step. A batch of one (the course notebook's recipe) launches
what a batch of 128 does, and its step is captured and replayed as one graph launch too.
`scripts/bench.py --count-launches` prints where the launches go, layer by layer.
"""

import numpy
import pytest

from conftest import make_backend
from nets.data.batches import EpochOrder
from nets.nn.models import build_model
from nets.optim import SGD, Adam
from nets.train.engine import NetsEngine
from nets.train.loop import DeviceData, fit
from nets.train.settings import Hyperparameters

BUDGET = {"mlp": 40, "cnn": 70}  # kernel launches per training step
PREDICT_BUDGET = {"mlp": 10, "cnn": 18}  # eval forward and argmax (engine.predict's logits, then argmax)
BATCH = 128


OPTIMIZERS = {
    "adam": lambda params: Adam(params, lr=1e-3),
    "adam, weight decay": lambda params: Adam(params, lr=1e-3, weight_decay=1e-4),
    "sgd, momentum": lambda params: SGD(params, lr=0.01, momentum=0.9),
    "adam, capturable": lambda params: Adam(params, lr=1e-3, capturable=True),  # what a captured step runs
}


def engine_and_data(backend, name, count=512, optimizer="adam"):
    model = build_model(name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    engine = NetsEngine(model, OPTIMIZERS[optimizer](model.parameters()), backend)
    rng = numpy.random.default_rng(1)
    images = backend.asarray(rng.random((count, *model.input_shape), dtype=numpy.float32))
    labels = backend.asarray(rng.integers(0, 10, count))
    return engine, images, labels


def one_step(standin_gpu, name, optimizer="adam", batch=BATCH):
    engine, images, labels = engine_and_data(standin_gpu, name, optimizer=optimizer)
    engine.plan([1e-3] * 10)
    index = standin_gpu.asarray(numpy.arange(batch))
    for _ in range(3):  # warm-up: buffers, index tables, workspaces
        engine.train_step(*engine.batch(images, labels, index))
    x, y = engine.batch(images, labels, index)
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    engine.train_step(x, y)
    return counter.since(mark), engine, images


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_training_step_keeps_to_its_launch_budget(standin_gpu, name, optimizer):
    tally, _, _ = one_step(standin_gpu, name, optimizer)
    assert tally.launches <= BUDGET[name], f"{tally.launches} launches: {tally.by_site()}"
    assert tally.syncs == 0, tally.where("sync")
    assert tally.transfers == 0, tally.by_site(("h2d", "d2h"))
    assert tally.memsets == 0 and tally.memcpys == 0
    # every array the step writes has a stable home (what a captured CUDA graph needs): nothing is allocated
    assert tally.allocations == 0, [(event.name, event.site) for event in tally.where("alloc")]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_batch_of_one_launches_what_a_batch_of_128_does_and_is_captured(standin_gpu, name):
    """The loss head's row reductions take CuPy's own reduction kernel at every batch size: with one row a reversed
    view is C-contiguous, where CUB's segmented reduction would allocate its result each step (a graph cannot hold
    that). So the step of one image keeps to the budget, allocates nothing, and replays as one graph launch."""
    one, engine, images = one_step(standin_gpu, name, batch=1)
    many, _, _ = one_step(make_backend("standin"), name)
    # at most what a batch of 128 launches (with one image, Flatten's channel-major input is already in C order)
    assert one.launches <= many.launches <= BUDGET[name], (one.by_site(), many.by_site())
    assert one.allocations == one.syncs == one.transfers == 0, one.where("alloc")
    labels = standin_gpu.asarray(numpy.random.default_rng(2).integers(0, 10, 4))
    order = EpochOrder(standin_gpu, 4, 1)
    order.start(numpy.arange(4))

    def step():
        engine.train_step(*engine.batch(images[:4], labels, order.next_rows()))

    graphed = engine.graphed(step, "on")
    engine.plan([1e-3] * 4, capacity=4)
    counter = standin_gpu.xp.counter
    with graphed.on_stream():
        mark = counter.mark()
        graphed()  # the warm-up, eager
        warm_up = counter.since(mark)
        graphed()  # captured, then launched
        mark = counter.mark()
        graphed()
        replay = counter.since(mark)
    assert graphed.kernels == warm_up.launches  # the very kernels of the eager warm-up
    assert (replay.graph_launches, replay.host_calls, replay.launches, replay.allocations) == (1, 1, 0, 0)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_prediction_keeps_to_its_launch_budget(standin_gpu, name):
    _, engine, images = one_step(standin_gpu, name)
    batch = images[:BATCH]
    engine.predict(batch).argmax(1)  # the evaluation buffers and tables
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    engine.predict(batch).argmax(1)
    tally = counter.since(mark)
    assert tally.launches <= PREDICT_BUDGET[name], tally.by_site()
    assert tally.syncs == 0 and tally.transfers == 0
    # the evaluation forward reuses buffers it keeps (sized once): only argmax's result is a new array
    assert tally.allocations == 1, [(event.name, event.site) for event in tally.where("alloc")]


def test_a_gathered_batch_is_two_launches_into_the_steps_buffers(standin_gpu):
    engine, images, labels = engine_and_data(standin_gpu, "mlp")
    index = standin_gpu.asarray(numpy.arange(BATCH))
    first = engine.batch(images, labels, index)
    mark = standin_gpu.xp.counter.mark()
    second = engine.batch(images, labels, index)
    tally = standin_gpu.xp.counter.since(mark)
    assert tally.by_kind() == {"gather": 2}
    assert second[0] is first[0] and second[1] is first[1]  # the same buffers, step after step


@pytest.mark.parametrize("graph", ["off", "on"])
def test_fit_reads_the_device_only_every_few_steps(standin_gpu, graph):
    """Syncs per epoch: one per progress refresh (loss and hits in one read), one to stop the clock and one
    for the test accuracy; none inside a step. A captured run adds one on entering its stream, one on leaving."""
    engine, _, _ = engine_and_data(standin_gpu, "mlp", count=8)
    rng = numpy.random.default_rng(2)
    count, test_count = 40 * 16, 64
    data = DeviceData(
        standin_gpu.asarray(rng.random((count, 784), dtype=numpy.float32)),
        standin_gpu.asarray(rng.integers(0, 10, count)),
        standin_gpu.asarray(rng.random((test_count, 784), dtype=numpy.float32)),
        standin_gpu.asarray(rng.integers(0, 10, test_count)), image_width=28)
    hyperparameters = Hyperparameters(optimizer="adam", lr=1e-3, batch_size=16, epochs=2, schedule="onecycle")
    bars = []

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text, refresh=False):
            bars.append(text)

        def close(self):
            pass

    counter = standin_gpu.xp.counter
    mark = counter.mark()
    fit(engine, data, hyperparameters, numpy.random.default_rng(0), progress=lambda total, name: Bar(), log=None,
        graph=graph)
    tally = counter.since(mark)
    steps_per_epoch, refresh_every = 40, 2  # fit refreshes every max(1, min(50, steps // 20)) steps
    refreshes = steps_per_epoch // refresh_every
    assert tally.syncs == hyperparameters.epochs * (refreshes + 2) + (2 if graph == "on" else 0), \
        tally.by_site(("sync",))
    assert len(bars) == hyperparameters.epochs * refreshes
    # copies to the device: each epoch's order and its learning rates; the loss head's constants once
    copies = tally.by_site(("h2d",))
    assert sum(n for site, n in copies.items() if " start" in site) == hyperparameters.epochs
    assert sum(n for site, n in copies.items() if " plan" in site) == hyperparameters.epochs
    assert all(" start" in site or " plan" in site or "_workspace" in site for site in copies), copies
    # captured: every full batch but the first (the warm-up) is one graph launch
    assert tally.graph_launches == (hyperparameters.epochs * steps_per_epoch - 1 if graph == "on" else 0)


def test_the_budget_is_the_gpu_twins_and_the_cpu_twins_forced_on_a_device_give_the_same_step(standin_gpu):
    """On a device the Layer base picks the gpu twins, whose launches the budget counts; the cpu twins forced on the
    same device (layer.twin = "cpu") compute the same gradients with many more launches."""
    tallies, gradients = {}, {}
    for twin in (None, "cpu"):
        engine, images, labels = engine_and_data(standin_gpu, "cnn")
        for _, layer in engine.model.layers:
            layer.twin = twin
        index = standin_gpu.asarray(numpy.arange(BATCH))
        x, y = engine.batch(images, labels, index)
        engine.model.backward_step(engine.head(engine.model.forward_step(x), y))  # buffers and tables
        mark = standin_gpu.xp.counter.mark()
        engine.model.backward_step(engine.head(engine.model.forward_step(x), y))
        tallies[twin] = standin_gpu.xp.counter.since(mark).launches
        gradients[twin] = standin_gpu.to_numpy(engine.model.gradients().flat).copy()
    assert tallies[None] + 12 <= BUDGET["cnn"] < tallies["cpu"]  # 12: the optimizer, not run here
    numpy.testing.assert_allclose(gradients["cpu"], gradients[None], rtol=1e-4, atol=1e-6)
