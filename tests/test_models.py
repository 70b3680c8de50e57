"""MLP and CNN: PyTorch parity on MNIST-like inputs with ties, parameter naming, state dicts, configs."""

import json
import subprocess
import sys

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import mnist_like_images, parity_tolerance, relative_error
from nets.nn.models import CNN, MLP, build_model
from nets.baseline import torch_or_none
from nets.baseline.models import build_torch_model, load_nets_params_into

CNN_SHAPES = {
    "conv1.weight": (16, 1, 3, 3),
    "conv1.bias": (16,),
    "conv2.weight": (32, 16, 3, 3),
    "conv2.bias": (32,),
    "fc1.weight": (48, 3200),
    "fc1.bias": (48,),
    "fc2.weight": (10, 48),
    "fc2.bias": (10,),
}
MLP_SHAPES = {
    "fc1.weight": (128, 784),
    "fc1.bias": (128,),
    "fc2.weight": (64, 128),
    "fc2.bias": (64,),
    "fc3.weight": (10, 64),
    "fc3.bias": (10,),
}


def torch_parity_errors(model, images, labels):
    """{quantity: relative_error} of model against the PyTorch baseline with the same weights."""
    torch = torch_or_skip()
    backend = model.backend
    x_host = images.reshape((len(images), *model.input_shape)).astype(model.dtype)
    loss, logits = model.loss_and_gradients(backend.asarray(x_host), backend.asarray(labels))
    gradients = {name: backend.to_numpy(grad).copy() for name, grad in model.gradients().items()}
    from nets.nn.losses import softmax_cross_entropy

    _, dlogits = softmax_cross_entropy(logits, backend.asarray(labels))
    model.forward(backend.asarray(x_host))
    dx = model.backward(dlogits)

    reference = build_torch_model(model.config(), dtype=str(model.dtype))
    load_nets_params_into(reference, model.state_dict())
    x_torch = torch.from_numpy(x_host).requires_grad_(True)
    logits_torch = reference(x_torch)
    loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels))
    loss_torch.backward()
    torch_parameters = dict(reference.named_parameters())
    errors = {
        "logits": relative_error(backend.to_numpy(logits), logits_torch.detach().numpy()),
        "loss": relative_error(backend.to_numpy(loss), loss_torch.item()),
        "input": relative_error(backend.to_numpy(dx), x_torch.grad.numpy()),
    }
    for name, gradient in gradients.items():
        errors[name] = relative_error(gradient, torch_parameters[name].grad.numpy())
    return errors


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_model_matches_torch_on_images_with_ties(backend, dtype, name):
    rng = numpy.random.default_rng(0)
    model = build_model(name, backend=backend, dtype=dtype, rng=rng)
    # Weights on a 2**-5 grid and pixels on a 2**-8 grid (still full of exact zeros): every conv and pooling
    # value is then exact in float32 whatever the summation order, so a near-tie cannot be rounded one way by
    # our GEMM and the other by torch's convolution (OpenBLAS's Haswell kernel did that: 0.36 on the input).
    model.load_state_dict({key: numpy.round(value * 32) / 32 for key, value in model.state_dict().items()})
    images = numpy.round(mnist_like_images(rng, 32) * 256) / 256
    labels = rng.integers(0, 10, size=32)
    errors = torch_parity_errors(model, images, labels)
    assert set(errors) == {"logits", "loss", "input", *model.parameters()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < parity_tolerance(dtype), f"{worst}: {errors[worst]:.3g}"


def test_small_cnn_directional_derivative(backend):
    """d/dt loss(theta + t v) by central differences equals <gradient, v> (Chainer's directional check)."""
    rng = numpy.random.default_rng(1)
    # torch init: with he init's zero biases a sample whose features are all 0 sits exactly on a ReLU kink
    model = CNN(
        channels=(2, 3), hidden=5, classes=4, image_size=10, backend=backend, dtype="float64", init="torch", rng=rng
    )
    x = backend.asarray(rng.standard_normal((3, 1, 10, 10)))
    labels = backend.asarray(numpy.array([0, 3, 1]))
    model.loss_and_gradients(x, labels)
    directions = {name: rng.standard_normal(p.shape) for name, p in model.parameters().items()}
    analytic = sum(float((backend.to_numpy(g) * directions[n]).sum()) for n, g in model.gradients().items())
    original = model.state_dict()
    eps = 1e-6
    losses = []
    for sign in (1, -1):
        model.load_state_dict({n: original[n] + sign * eps * directions[n] for n in original})
        losses.append(float(model.loss_and_gradients(x, labels)[0]))
    assert (losses[0] - losses[1]) / (2 * eps) == pytest.approx(analytic, rel=1e-6)


@pytest.mark.parametrize("model_class, shapes", [(CNN, CNN_SHAPES), (MLP, MLP_SHAPES)])
def test_parameters_are_named_and_ordered_like_torch(backend, dtype, model_class, shapes):
    model = model_class(backend=backend, dtype=dtype)
    parameters = model.parameters()
    assert list(parameters) == list(shapes)
    assert {name: tuple(p.shape) for name, p in parameters.items()} == shapes
    assert list(model.gradients()) == list(shapes)
    assert all(p.dtype == dtype for p in parameters.values())
    layers = dict(model.layers)
    for name, parameter in parameters.items():
        layer_name, key = name.split(".")
        assert parameter is layers[layer_name].params[key]
    if torch_or_none() is not None:
        assert list(build_torch_model(model.config()).state_dict()) == list(shapes)


def test_models_describe_themselves(backend):
    cnn, mlp = CNN(backend=backend), MLP(backend=backend)
    assert (cnn.name, cnn.input_shape, cnn.dtype) == ("cnn", (1, 28, 28), numpy.float32)
    assert (mlp.name, mlp.input_shape, mlp.backend) == ("mlp", (784,), backend)
    for model in (cnn, mlp):
        config = json.loads(json.dumps(model.config()))
        rebuilt = build_model(config, backend=backend, dtype="float64")
        assert rebuilt.config() == model.config() and rebuilt.dtype == numpy.float64
    assert build_model("cnn", backend=backend, init="torch").config()["init"] == "torch"


def test_build_model_errors_are_one_line(backend):
    for bad, message in [("resnet", "unknown model"), ({"name": "mlp", "depth": 3}, "unknown keys depth")]:
        with pytest.raises(ValueError, match=message) as error:
            build_model(bad, backend=backend)
        assert "\n" not in str(error.value)


def test_rng_defaults_to_the_backends(backend):
    first = MLP(backend=type(backend)(backend.name, backend.xp, seed=3)).state_dict()
    second = MLP(backend=type(backend)(backend.name, backend.xp, seed=3)).state_dict()
    assert all(numpy.array_equal(first[name], second[name]) for name in first)


def test_optimiser_style_in_place_update_reaches_the_layers(backend):
    model = MLP((4, 3, 2), backend=backend, dtype="float64")
    x = backend.asarray(numpy.ones((1, 4)))
    before = backend.to_numpy(model.forward(x)).copy()
    for parameter in model.parameters().values():
        parameter *= 0
    assert not backend.to_numpy(model.forward(x)).any() and before.any()


def test_state_dict_round_trip_and_host_copies(backend, dtype):
    source = CNN(backend=backend, dtype=dtype, rng=numpy.random.default_rng(5))
    target = CNN(backend=backend, dtype=dtype, rng=numpy.random.default_rng(6))
    state = source.state_dict()
    assert all(type(value) is numpy.ndarray and value.dtype == dtype for value in state.values())
    state["fc2.bias"][:] = 7  # a host copy: the model does not change
    assert not (backend.to_numpy(source.parameters()["fc2.bias"]) == 7).any()
    arrays_before = {name: id(p) for name, p in target.parameters().items()}
    target.load_state_dict(source.state_dict())
    assert {name: id(p) for name, p in target.parameters().items()} == arrays_before
    for name, value in source.state_dict().items():
        numpy.testing.assert_array_equal(target.state_dict()[name], value)


def test_load_state_dict_casts_floats_only(backend):
    model = MLP((3, 2), backend=backend, dtype="float32")
    model.load_state_dict({"fc1.weight": numpy.ones((2, 3)), "fc1.bias": numpy.ones(2, dtype="float16")})
    assert model.parameters()["fc1.weight"].dtype == numpy.float32
    assert float(model.parameters()["fc1.weight"].sum()) == 6
    with pytest.raises(ValueError, match="dtype of fc1.weight is int64"):
        model.load_state_dict({"fc1.weight": numpy.ones((2, 3), dtype=numpy.int64), "fc1.bias": numpy.ones(2)})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("fc1.bias"), "lack .*fc1.bias"),
        (lambda s: s.update(extra=numpy.zeros(1)), "have .*extra"),
        (lambda s: s.update({"fc2.weight": numpy.zeros((2, 5))}),
         r"fc2.weight has shape \(2, 5\), but .* has \(2, 4\)"),
    ],
)
def test_load_state_dict_errors_are_one_line_and_change_nothing(backend, change, message):
    model = MLP((3, 4, 2), backend=backend, dtype="float64")
    before = model.state_dict()
    state = {name: value + 1 for name, value in before.items()}
    change(state)
    with pytest.raises(ValueError, match=message) as error:
        model.load_state_dict(state)
    assert "\n" not in str(error.value)
    assert all(numpy.array_equal(model.state_dict()[n], before[n]) for n in before)


def test_loss_and_gradients_equals_separate_calls(backend):
    rng = numpy.random.default_rng(7)
    model = CNN(backend=backend, dtype="float64", rng=rng)
    x = backend.asarray(mnist_like_images(rng, 4))
    labels = backend.asarray(numpy.array([1, 2, 3, 4]))
    loss, logits = model.loss_and_gradients(x, labels)
    assert loss.shape == () and logits.shape == (4, 10)
    first = {name: backend.to_numpy(g).copy() for name, g in model.gradients().items()}
    numpy.testing.assert_array_equal(backend.to_numpy(model.forward(x, train=False)), backend.to_numpy(logits))
    from nets.nn.losses import softmax_cross_entropy

    _, dlogits = softmax_cross_entropy(model.forward(x), labels)
    dx = model.backward(dlogits)
    assert dx.shape == (4, 1, 28, 28)
    for name, gradient in model.gradients().items():
        numpy.testing.assert_array_equal(backend.to_numpy(gradient), first[name])


def test_torch_baseline_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            "import nets.baseline, nets.baseline.models, nets.baseline.engine, "
            "nets.baseline.checkpoint; assert nets.baseline.torch_or_none() is None")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_results_handed_out_are_not_reused_buffers(backend, name):
    """Layers inside a model reuse their work buffers; what the model returns must not alias them."""
    rng = numpy.random.default_rng(8)
    model = build_model(name, backend=backend, dtype="float64", rng=rng)
    first_x, second_x = (backend.asarray(mnist_like_images(rng, 3).reshape((3, *model.input_shape))) for _ in range(2))
    first = model.forward(first_x)
    kept = backend.to_numpy(first).copy()
    first_dx = model.backward(backend.xp.ones_like(first))
    kept_dx = backend.to_numpy(first_dx).copy()
    second = model.forward(second_x)
    second_dx = model.backward(backend.xp.ones_like(second))
    numpy.testing.assert_array_equal(backend.to_numpy(first), kept)
    numpy.testing.assert_array_equal(backend.to_numpy(first_dx), kept_dx)
    assert not numpy.array_equal(backend.to_numpy(second), kept)
    assert not numpy.array_equal(backend.to_numpy(second_dx), kept_dx)


def test_a_second_step_repeats_the_first_exactly(backend):
    """Reused buffers hold no state between steps: the same batch gives the same loss and gradients."""
    rng = numpy.random.default_rng(9)
    model = CNN(backend=backend, dtype="float32", rng=rng)
    x = backend.asarray(mnist_like_images(rng, 5))
    labels = backend.asarray(numpy.arange(5))
    results = []
    for _ in range(2):
        loss, logits = model.loss_and_gradients(x, labels)
        results.append([backend.to_numpy(a).copy() for a in (loss, logits, *model.gradients().values())])
        model.forward(backend.asarray(mnist_like_images(rng, 7)), train=True)  # a different batch in between
    for first, second in zip(*results):
        numpy.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_an_evaluation_forward_between_forward_and_backward_changes_nothing(backend, name):
    rng = numpy.random.default_rng(10)
    model = build_model(name, backend=backend, dtype="float64", rng=rng)
    x, other = (backend.asarray(mnist_like_images(rng, 4).reshape((4, *model.input_shape))) for _ in range(2))
    dlogits = backend.asarray(rng.standard_normal((4, 10)))
    model.forward(x)
    expected_dx = backend.to_numpy(model.backward(dlogits))
    expected = {name: backend.to_numpy(g).copy() for name, g in model.gradients().items()}
    model.forward(x)
    model.forward(other, train=False)
    numpy.testing.assert_array_equal(backend.to_numpy(model.backward(dlogits)), expected_dx)
    for key, gradient in model.gradients().items():
        numpy.testing.assert_array_equal(backend.to_numpy(gradient), expected[key])


def test_a_batch_of_the_wrong_shape_is_a_clear_error(backend):
    model = MLP(backend=backend)
    with pytest.raises(ValueError, match=r"takes inputs of shape \(N, 784\), got \(2, 1, 28, 28\)"):
        model.forward(numpy.zeros((2, 1, 28, 28), dtype="float32"))


def test_a_prediction_keeps_nothing_for_backward_and_sizes_its_buffers_once(backend):
    """predict runs the layers' evaluation forward: no layer can run backward after it; on the CPU the layers before
    the first Linear run batches beyond the model's predict_chunk in chunks of exactly that size, so a second, larger
    batch makes no new buffers there."""
    model = build_model("cnn", backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    convolutional = [layer for _, layer in model.layers[:model.layers.index(("fc1", model.layers[-3][1]))]]
    assert [type(layer).__name__ for layer in convolutional] == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d",
                                                                 "Flatten"]
    rng = numpy.random.default_rng(1)
    first = model.predict(rng.random((70, 1, 28, 28), dtype=numpy.float32))
    kept = sum(len(layer._buffers) for layer in convolutional)
    images = rng.random((101, 1, 28, 28), dtype=numpy.float32)
    logits = backend.to_numpy(model.predict(images))
    assert sum(len(layer._buffers) for layer in convolutional) == (kept if not backend.is_gpu else kept * 2)
    one_by_one = numpy.concatenate([backend.to_numpy(model.predict(images[i:i + 1])) for i in (0, 50, 100)])
    numpy.testing.assert_allclose(logits[[0, 50, 100]], one_by_one, rtol=1e-5, atol=1e-5)
    assert first.shape == (70, 10) and logits.shape == (101, 10)
    for _, layer in model.layers:
        with pytest.raises(RuntimeError, match="forward"):
            layer.backward(backend.xp.ones((1, 1), dtype=numpy.float32))
