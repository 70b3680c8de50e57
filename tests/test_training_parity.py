"""nets against the PyTorch baseline: checkpoints load into torch unchanged, state_dicts round-trip,
and 50 training steps from the same weights on the same batches follow PyTorch's loss curve."""

import numpy
import pytest

from nets.baseline.checkpoint import (export_torch_state_dict, load_any_checkpoint, load_torch_state_dict,
                                      save_torch_state_dict)
from nets.checkpoint import restore_model, save_checkpoint
from nets.nn.models import build_model
from nets.optim import SGD, Adam
from nets.baseline.models import build_torch_model
from conftest import torch_or_skip

# The real MLP; the CNN's exact layer sequence at a smaller image size so 50 CPU steps take about a second.
CONFIGS = {
    "mlp": {"name": "mlp", "sizes": [784, 128, 64, 10]},
    "cnn": {"name": "cnn", "in_channels": 1, "channels": [16, 32], "hidden": 48, "classes": 10, "image_size": 12},
}
STEPS = 50
BATCH = 16
# float64: each step's loss to 1e-8 relative (measured 4e-16 on CPU); float32: the last loss to a few 1e-3
# (measured 2e-7).
CURVE_TOLERANCE = {"float64": 1e-8, "float32": 3e-3}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch's thread pool on two shared cores is 10x slower than one thread for these small ops."""
    torch = torch_or_skip()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def nets_model(name, backend, dtype, seed=0):
    return build_model(CONFIGS[name], backend=backend, dtype=dtype, init="torch", rng=numpy.random.default_rng(seed))


def input_shape(name):
    size = CONFIGS["cnn"]["image_size"]
    return (784,) if name == "mlp" else (1, size, size)


def synthetic_batches(name, dtype, count, seed=1):
    """Images in [0, 1) and labels a fixed random linear teacher assigns, so there is something to learn."""
    rng = numpy.random.default_rng(seed)
    features = int(numpy.prod(input_shape(name)))
    teacher = rng.standard_normal((features, 10))
    batches = []
    for _ in range(count):
        x = rng.random((BATCH, *input_shape(name)))
        labels = numpy.argmax((x.reshape(BATCH, -1) - 0.5) @ teacher, axis=1)
        batches.append((x.astype(dtype), labels.astype(numpy.int64)))
    return batches


def torch_logits(torch_model, x):
    torch = torch_or_skip()
    with torch.no_grad():
        return torch_model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_nets_checkpoint_loads_into_the_torch_baseline_by_plain_names(tmp_path, backend, dtype, name):
    torch = torch_or_skip()
    model = nets_model(name, backend, dtype)
    path = save_checkpoint(tmp_path / f"{name}.npz", model.state_dict(), model.config(), epoch=1)

    torch_model = build_torch_model(model.config(), dtype=dtype.name)
    with numpy.load(path, allow_pickle=False) as arrays:
        state = {key: torch.from_numpy(arrays[key]) for key in arrays.files if key in torch_model.state_dict()}
    assert list(state) == list(torch_model.state_dict())
    torch_model.load_state_dict(state)  # strict: every name and shape fits

    x, _ = synthetic_batches(name, dtype, 1)[0]
    ours = backend.to_numpy(model.forward(backend.asarray(x), train=False))
    theirs = torch_logits(torch_model, x)
    numpy.testing.assert_array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))
    tolerance = 1e-12 if dtype == numpy.float64 else 1e-5
    numpy.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torch_weights_round_trip_through_nets(tmp_path, backend, name):
    """torch init -> .pt -> nets model (architecture inferred) -> export -> torch: unchanged, same predictions."""
    torch = torch_or_skip()
    torch.manual_seed(0)
    torch_model = build_torch_model(CONFIGS[name], dtype="float32")
    torch.save(torch_model.state_dict(), tmp_path / "baseline.pt")

    model = restore_model(load_any_checkpoint(tmp_path / "baseline.pt"), backend, model_name=name)
    assert model.config() == {**CONFIGS[name], "init": model.config()["init"]}
    x, _ = synthetic_batches(name, numpy.float32, 1)[0]
    ours = backend.to_numpy(model.forward(backend.asarray(x), train=False))
    numpy.testing.assert_array_equal(ours.argmax(axis=1), torch_logits(torch_model, x).argmax(axis=1))

    back = build_torch_model(CONFIGS[name], dtype="float32")
    back.load_state_dict(export_torch_state_dict(model))
    for key, tensor in torch_model.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor)

    save_torch_state_dict(tmp_path / "again.pt", model)
    again = load_torch_state_dict(tmp_path / "again.pt")
    fresh = nets_model(name, backend, "float32", seed=5)
    fresh.load_state_dict(again)
    for key, tensor in torch_model.state_dict().items():
        numpy.testing.assert_array_equal(fresh.state_dict()[key], tensor.numpy())


def loss_curves(name, backend, dtype, optimizer_name):
    """Per-step losses of nets and of torch, trained from the same weights on the same batches."""
    torch = torch_or_skip()
    model = nets_model(name, backend, dtype)
    torch_model = build_torch_model(model.config(), dtype=dtype.name)
    torch_model.load_state_dict(export_torch_state_dict(model))
    if optimizer_name == "adam":
        settings = dict(lr=1e-3, weight_decay=1e-4)
        optimizer = Adam(model.parameters(), **settings)
        torch_optimizer = torch.optim.Adam(torch_model.parameters(), **settings)
    else:
        settings = dict(lr=0.05, momentum=0.9, weight_decay=1e-4)
        optimizer = SGD(model.parameters(), **settings)
        torch_optimizer = torch.optim.SGD(torch_model.parameters(), **settings)

    ours, theirs = [], []
    for x, labels in synthetic_batches(name, dtype, STEPS):
        loss, _ = model.loss_and_gradients(backend.asarray(x), backend.asarray(labels))
        optimizer.step(model.gradients())
        ours.append(float(loss))

        torch_optimizer.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(labels))
        torch_loss.backward()
        torch_optimizer.step()
        theirs.append(torch_loss.item())
    return numpy.array(ours), numpy.array(theirs)


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_fifty_steps_follow_pytorchs_loss_curve(backend, dtype, name, optimizer_name):
    ours, theirs = loss_curves(name, backend, dtype, optimizer_name)
    assert theirs[-10:].mean() < theirs[:10].mean()  # it does learn, so the comparison means something
    relative = numpy.abs(ours - theirs) / numpy.abs(theirs)
    if dtype == numpy.float64:
        assert relative.max() <= CURVE_TOLERANCE["float64"], f"worst step {relative.argmax()}: {relative.max():.2e}"
    else:
        assert relative[-1] <= CURVE_TOLERANCE["float32"], f"last step: {relative[-1]:.2e}"
        worst = relative.argmax()
        assert relative[worst] <= 10 * CURVE_TOLERANCE["float32"], f"worst step {worst}: {relative[worst]:.2e}"
