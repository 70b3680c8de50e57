"""The reference layers (nets/nn/reference) as the oracle: each checked against PyTorch, by finite differences in
float64 and (im2col/col2im) as an adjoint pair; then every fast layer, both twins of Conv2d and MaxPool2d, the
fused ReLU pooling, the loss head and the flat optimizers checked against them, forward and every gradient."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import (check_layer_gradients, mnist_like_images, numerical_gradient, parity_tolerance,
                          relative_error, tie_free)
from nets.nn import layers as fast
from nets.nn import reference
from nets.nn.losses import SoftmaxCrossEntropy
from nets.nn.parameters import ParameterBuffer
from nets.optim import SGD, Adam
from nets.train.reference import LossTotals, PlannedReference

CONV_CASES = [  # (in_channels, out_channels, kernel, stride, padding, height, width)
    (1, 4, 3, 1, 0, 7, 7), (3, 4, 3, 2, 1, 7, 6), (2, 3, 2, 2, 0, 6, 7), (3, 2, (2, 3), 1, 0, 5, 6),
    (2, 3, 3, 1, 2, 5, 5),
]
POOL_CASES = [(2, 2), (2, 1), (3, 2), (3, 1), (2, 3), (1, 1), ((2, 3), 2), ((2, 1), 1)]  # (kernel, stride)


def host(backend, arrays):
    return [backend.to_numpy(array).copy() for array in arrays]


def forward_backward(layer, x, dy_for):
    """y, dx and the gradients (weight, bias when the layer has them) of one training forward and backward."""
    y = layer.forward(x)
    dx = layer.backward(dy_for(y))
    return [y, dx, *(layer.grads[key] for key in ("weight", "bias") if key in layer.grads)]


def channel_major(backend, x):
    """The same (N, C, H, W) values stored as (C, N, H, W) memory, the layout the gpu twins hand on."""
    return backend.xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def in_layout(backend, x, layout):
    """x as NCHW, channel-major or channel-last (N, H, W, C) memory: the cpu twins hand on the last."""
    if layout == "channel-last":
        return backend.xp.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return channel_major(backend, x) if layout == "channel-major" else x


# ------------------------------------------------------------------ the reference against PyTorch
def torch_layer_results(module, x_host, dy_host):
    torch = torch_or_skip()
    x = torch.from_numpy(x_host).requires_grad_(True)
    y = module(x)
    y.backward(torch.from_numpy(dy_host))
    grads = [parameter.grad.numpy() for parameter in module.parameters()] if hasattr(module, "parameters") else []
    return [y.detach().numpy(), x.grad.numpy(), *grads]


@pytest.mark.parametrize("case", CONV_CASES)
def test_reference_conv_and_linear_match_torch(backend, dtype, case):
    torch = torch_or_skip()
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(4)
    for layer, module, x_host in [
        (reference.Conv2d(c, f, kernel, stride, padding, rng=rng, init="torch", dtype=dtype, xp=backend.xp),
         torch.nn.Conv2d(c, f, kernel, stride, padding), mnist_like_images(rng, 3, max(h, w), c)[:, :, :h, :w]),
        (reference.Linear(h * w, f, rng=rng, dtype=dtype, xp=backend.xp), torch.nn.Linear(h * w, f),
         rng.standard_normal((4, h * w))),
    ]:
        x_host = x_host.astype(dtype)
        module = module.to(getattr(torch, str(dtype)))
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(backend.to_numpy(layer.params["weight"])))
            module.bias.copy_(torch.from_numpy(backend.to_numpy(layer.params["bias"])))
        y = layer.forward(backend.asarray(x_host))
        dy_host = rng.standard_normal(y.shape).astype(dtype)
        ours = host(backend, [y, layer.backward(backend.asarray(dy_host)), layer.grads["weight"], layer.grads["bias"]])
        theirs = torch_layer_results(module, x_host, dy_host)
        for name, mine, torchs in zip(["y", "dx", "weight", "bias"], ours, theirs):
            assert mine.dtype == dtype, name
            assert relative_error(mine, torchs) < parity_tolerance(dtype), name


@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_reference_relu_and_pooling_match_torch_exactly_on_ties(backend, dtype, kernel, stride):
    torch = torch_or_skip()
    rng = numpy.random.default_rng(1)
    relu_like = numpy.maximum(rng.integers(-3, 3, size=(3, 4, 9, 10)), 0)
    for x_host in [relu_like, mnist_like_images(rng, 3, 10, 4)[:, :, :9], numpy.zeros((2, 2, 6, 6)), relu_like - 1]:
        x_host = x_host.astype(dtype)
        relu, pool = reference.ReLU(), reference.MaxPool2d(kernel, stride)
        y = pool.forward(relu.forward(backend.asarray(x_host)))
        dy_host = rng.integers(1, 9, size=y.shape).astype(dtype)  # small integers: every sum is exact
        ours = host(backend, [y, relu.backward(pool.backward(backend.asarray(dy_host)))])
        theirs = torch_layer_results(lambda x: torch.nn.functional.max_pool2d(torch.relu(x), kernel, stride),
                                     x_host, dy_host)
        for mine, torchs in zip(ours, theirs):
            assert mine.dtype == dtype
            numpy.testing.assert_array_equal(mine, torchs)


def test_reference_loss_matches_torch(backend, dtype):
    torch = torch_or_skip()
    rng = numpy.random.default_rng(1)
    logits_host, labels_host = (rng.standard_normal((64, 10)) * 4).astype(dtype), rng.integers(0, 10, size=64)
    loss, dlogits = reference.softmax_cross_entropy(backend.asarray(logits_host), backend.asarray(labels_host))
    logits = torch.from_numpy(logits_host).requires_grad_(True)
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels_host))
    torch_loss.backward()
    assert relative_error(backend.to_numpy(loss), torch_loss.item()) < parity_tolerance(dtype)
    assert relative_error(backend.to_numpy(dlogits), logits.grad.numpy()) < parity_tolerance(dtype)


SHAPES = {"fc1.weight": (6, 5), "fc1.bias": (6,), "fc2.weight": (3, 6), "fc2.bias": (3,)}
SGD_SETTINGS = [dict(lr=0.1), dict(lr=0.1, momentum=0.9, weight_decay=0.01),
                dict(lr=0.1, momentum=0.9, dampening=0.3), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)]
ADAM_SETTINGS = [dict(), dict(lr=0.01, weight_decay=0.05), dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6)]
OPTIMIZER_CASES = [("sgd", s) for s in SGD_SETTINGS] + [("adam", s) for s in ADAM_SETTINGS]
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}  # over 4 steps: float32 gathers a few ulps


def optimizer_inputs(dtype, steps=4):
    rng = numpy.random.default_rng(0)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    grads = [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()} for _ in range(steps)]
    return params, grads


def reference_optimizer_run(name, settings, backend, dtype, steps=4):
    params_host, grads = optimizer_inputs(dtype, steps)
    params = {key: backend.asarray(value) for key, value in params_host.items()}
    optimizer = {"sgd": reference.SGD, "adam": reference.Adam}[name](params, **settings)
    for step_grads in grads:
        optimizer.step({key: backend.asarray(value) for key, value in step_grads.items()})
    return {key: backend.to_numpy(value) for key, value in params.items()}, optimizer


@pytest.mark.parametrize("name, settings", OPTIMIZER_CASES)
def test_reference_optimizers_match_torch(backend, dtype, name, settings):
    torch = torch_or_skip()
    ours, _ = reference_optimizer_run(name, settings, backend, dtype)
    params_host, grads = optimizer_inputs(dtype)
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in params_host.items()}
    optimizer = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[name](list(tensors.values()), **settings)
    for step_grads in grads:
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(step_grads[key])
        optimizer.step()
    for key, tensor in tensors.items():
        assert ours[key].dtype == dtype
        theirs = tensor.detach().numpy()
        assert numpy.max(numpy.abs(ours[key] - theirs) / numpy.maximum(numpy.abs(theirs), 1)) < TOLERANCE[str(dtype)]


# ------------------------------------------------------------------ finite differences and the adjoint
@pytest.mark.parametrize("case", CONV_CASES)
def test_reference_conv_gradients_match_finite_differences(backend, case):
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(3)
    layer = reference.Conv2d(c, f, kernel, stride, padding, rng=rng, init="torch", dtype="float64", xp=backend.xp)
    check_layer_gradients(layer, backend.asarray(tie_free(rng, (2, c, h, w))), backend)


@pytest.mark.parametrize("kernel, stride", POOL_CASES)
def test_reference_pooling_gradients_match_finite_differences(backend, kernel, stride):
    check_layer_gradients(reference.MaxPool2d(kernel, stride),
                          backend.asarray(tie_free(numpy.random.default_rng(0), (2, 3, 7, 8))), backend)


def test_reference_linear_relu_flatten_gradients_match_finite_differences(backend):
    rng = numpy.random.default_rng(0)
    check_layer_gradients(reference.Linear(5, 4, rng=rng, init="torch", dtype="float64", xp=backend.xp),
                          backend.asarray(rng.standard_normal((3, 5))), backend)
    check_layer_gradients(reference.ReLU(), backend.asarray(tie_free(rng, (3, 2, 4))), backend)
    flatten = reference.Flatten()
    assert flatten.forward(backend.asarray(numpy.zeros((2, 3, 2, 2)))).shape == (2, 12)
    check_layer_gradients(flatten, backend.asarray(rng.standard_normal((2, 3, 2, 2))), backend)


def test_reference_loss_gradient_matches_finite_differences(backend):
    rng = numpy.random.default_rng(0)
    logits, labels = backend.asarray(rng.standard_normal((5, 4)) * 3), backend.asarray(numpy.array([0, 3, 1, 1, 2]))
    _, dlogits = reference.softmax_cross_entropy(logits, labels)
    numeric = numerical_gradient(lambda: reference.softmax_cross_entropy(logits, labels)[0], logits)
    numpy.testing.assert_allclose(backend.to_numpy(dlogits), numeric, rtol=1e-6, atol=1e-9)


def test_im2col_and_col2im_on_every_backend(backend):
    rng = numpy.random.default_rng(2)
    x_host = rng.standard_normal((2, 3, 7, 6))
    col = reference.im2col(backend.asarray(x_host), 3, 2, 2, 1)
    expected = numpy.pad(x_host, ((0, 0), (0, 0), (1, 1), (1, 1)))[:, :, 2:2 + 2 * 4:2, 1:1 + 2 * 4:2]
    numpy.testing.assert_array_equal(backend.to_numpy(col)[:, :, 2, 1], expected)  # offset (2, 1) of every window
    y_host = rng.standard_normal(col.shape)
    left = float((backend.to_numpy(col) * y_host).sum())
    right = float((x_host * backend.to_numpy(reference.col2im(backend.asarray(y_host), x_host.shape, 2, 1))).sum())
    assert left == pytest.approx(right, rel=1e-12)
    counts = backend.to_numpy(reference.col2im(backend.asarray(numpy.ones((1, 1, 3, 3, 3, 3))), (1, 1, 5, 5)))[0, 0]
    assert counts[2, 2] == 9 and counts[0, 0] == 1 and counts[0, 2] == 3  # copies of each pixel, added up


# ------------------------------------------------------------------ every fast layer against the reference
def integers(rng, shape, low=-3, high=4):
    """Small whole numbers as float64: every product and sum of a layer is then exact, so results must be equal."""
    return rng.integers(low, high, size=shape).astype(numpy.float64)


def same_parameters(backend, oracle, layer, rng):
    for key in ("weight", "bias"):
        values = backend.asarray(integers(rng, oracle.params[key].shape, -2, 3))
        oracle.params[key][...] = values
        layer.params[key][...] = values


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("twin", fast.TWINS)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channel-last"])
def test_fast_conv_equals_the_reference_exactly(backend, case, twin, layout):
    c, f, kernel, stride, padding, h, w = case
    rng = numpy.random.default_rng(6)
    oracle = reference.Conv2d(c, f, kernel, stride, padding, rng=rng, dtype="float64", xp=backend.xp)
    layer = fast.Conv2d(c, f, kernel, stride, padding, rng=rng, dtype="float64").to(backend)
    layer.twin = twin
    same_parameters(backend, oracle, layer, rng)
    x = backend.asarray(integers(rng, (3, c, h, w)))
    dy = None

    def dy_for(y):
        nonlocal dy
        dy = backend.asarray(integers(rng, y.shape)) if dy is None else dy
        return dy

    expected = host(backend, forward_backward(oracle, x, dy_for))
    got = host(backend, forward_backward(layer, in_layout(backend, x, layout), dy_for))
    for name, ours, theirs in zip(["y", "dx", "weight", "bias"], got, expected):
        numpy.testing.assert_array_equal(ours, theirs, err_msg=name)


@pytest.mark.parametrize("twin", fast.TWINS)
def test_fast_conv_agrees_with_the_reference_in_float32(backend, twin):
    rng = numpy.random.default_rng(8)
    oracle = reference.Conv2d(16, 32, 3, rng=numpy.random.default_rng(0), xp=backend.xp)
    layer = fast.Conv2d(16, 32, 3, rng=numpy.random.default_rng(0)).to(backend)  # the same draws: the same weights
    layer.twin = twin
    x = backend.asarray(rng.random((8, 16, 13, 13), dtype=numpy.float32))
    dy = backend.asarray(rng.standard_normal((8, 32, 11, 11)).astype(numpy.float32))
    expected = host(backend, forward_backward(oracle, x, lambda y: dy))
    got = host(backend, forward_backward(layer, x, lambda y: dy))
    for name, ours, theirs in zip(["y", "dx", "weight", "bias"], got, expected):
        assert ours.dtype == numpy.float32 and relative_error(ours, theirs) < parity_tolerance("float32"), name


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel, stride", POOL_CASES)
@pytest.mark.parametrize("twin", fast.TWINS)
@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channel-last"])
def test_fast_pooling_equals_the_reference_exactly_on_ties(backend, kernel, stride, relu, twin, layout):
    """MaxPool2d(relu=True) is the fused max(maxpool(x), 0): the reference runs ReLU, then MaxPool2d."""
    rng = numpy.random.default_rng(2)
    for x_host in [integers(rng, (2, 3, 7, 8), -2, 3), mnist_like_images(rng, 2, 9, 3)[:, :, :7] - 0.5]:
        x = backend.asarray(x_host)
        dy = backend.asarray(integers(rng, (2, 3) + reference.MaxPool2d(kernel, stride).forward(x).shape[2:], 1, 9))
        oracle = ([reference.ReLU()] if relu else []) + [reference.MaxPool2d(kernel, stride)]
        y = x
        for part in oracle:
            y = part.forward(y)
        dx = dy
        for part in reversed(oracle):
            dx = part.backward(dx)
        layer = fast.MaxPool2d(kernel, stride, relu=relu)
        layer.twin = twin
        got = host(backend, [layer.forward(in_layout(backend, x, layout))])
        got += host(backend, [layer.backward(dy)])
        for name, ours, theirs in zip(["y", "dx"], got, host(backend, [y, dx])):
            numpy.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_fast_linear_relu_and_flatten_equal_the_reference_exactly(backend):
    rng = numpy.random.default_rng(3)
    oracle = reference.Linear(12, 5, rng=rng, dtype="float64", xp=backend.xp)
    layer = fast.Linear(12, 5, rng=rng, dtype="float64").to(backend)
    same_parameters(backend, oracle, layer, rng)
    x, dy = backend.asarray(integers(rng, (4, 12))), backend.asarray(integers(rng, (4, 5)))
    expected = host(backend, forward_backward(oracle, x, lambda y: dy))
    with_ones = layer.input_with_ones(4, backend.xp, numpy.float64)  # the fast form: the bias rides on the ones
    with_ones[:, :-1] = x
    for given in (x, with_ones):
        for name, ours, theirs in zip(["y", "dx", "weight", "bias"],
                                      host(backend, forward_backward(layer, given, lambda y: dy)), expected):
            numpy.testing.assert_array_equal(ours, theirs, err_msg=name)
    images = backend.asarray(integers(rng, (2, 3, 4, 4)))
    for oracle, layer, given in [(reference.ReLU(), fast.ReLU(), images),
                                 (reference.Flatten(), fast.Flatten(), channel_major(backend, images))]:
        dy = backend.asarray(integers(rng, oracle.forward(images).shape))
        for ours, theirs in zip(host(backend, forward_backward(layer, given, lambda y: dy)),
                                host(backend, forward_backward(oracle, images, lambda y: dy))):
            numpy.testing.assert_array_equal(ours, theirs)


def test_the_fast_loss_head_agrees_with_the_reference(backend, dtype):
    rng = numpy.random.default_rng(4)
    head, totals = SoftmaxCrossEntropy(classes=10), LossTotals()
    for n in (16, 16, 7):
        logits = backend.asarray((rng.standard_normal((n, 10)) * 5).astype(dtype))
        labels = backend.asarray(rng.integers(0, 10, size=n))
        ours, theirs = head(logits, labels), totals(logits, labels)
        assert ours.dtype == theirs.dtype == dtype
        assert relative_error(backend.to_numpy(ours), backend.to_numpy(theirs)) < parity_tolerance(dtype)
    (loss_sum, hits), (expected_loss, expected_hits) = head.totals(), totals.totals()
    assert hits == expected_hits and loss_sum == pytest.approx(expected_loss, rel=parity_tolerance(dtype))


def flat_parameters(backend, dtype, params_host):
    """The parameters of SHAPES as one fast ParameterBuffer (two fast Linear layers), holding params_host."""
    layers = [("fc1", fast.Linear(5, 6, rng=numpy.random.default_rng(0), dtype=dtype)),
              ("fc2", fast.Linear(6, 3, rng=numpy.random.default_rng(0), dtype=dtype))]
    buffer = ParameterBuffer(layers, backend.xp, dtype)
    for key, value in params_host.items():
        buffer[key][...] = backend.asarray(value)
    return buffer


@pytest.mark.parametrize("name, settings", OPTIMIZER_CASES)
def test_the_flat_optimizers_agree_with_the_reference_and_share_its_state(backend, dtype, name, settings):
    """Four steps under a planned learning rate, then each optimizer continues from the other's state_dict."""
    params_host, grads = optimizer_inputs(dtype, steps=8)
    buffer = flat_parameters(backend, dtype, params_host)
    flat = {"sgd": SGD, "adam": Adam}[name](buffer, **settings)
    params = {key: backend.asarray(value) for key, value in params_host.items()}
    current = {}  # the gradients of the step under way, as a model's gradients() would give them
    oracle = PlannedReference({"sgd": reference.SGD, "adam": reference.Adam}[name](params, **settings), lambda: current)
    tolerance = TOLERANCE[str(dtype)]

    def steps(flat, oracle, grads):
        schedule = [0.5 * settings.get("lr", 1e-3) * (index + 1) for index in range(len(grads))]
        flat.plan(schedule)
        oracle.plan(schedule)
        for step_grads in grads:
            for key, value in step_grads.items():
                buffer.grads[key][...] = backend.asarray(value)
            flat.step()
            current.update({key: backend.asarray(value) for key, value in step_grads.items()})
            oracle.step()
        for key in params:
            ours, theirs = backend.to_numpy(buffer[key]), backend.to_numpy(params[key])
            assert ours.dtype == dtype
            assert numpy.max(numpy.abs(ours - theirs) / numpy.maximum(abs(theirs), 1)) < tolerance

    steps(flat, oracle, grads[:4])
    flat_state, oracle_state = flat.state_dict(), oracle.state_dict()
    assert (oracle_state["name"], oracle_state["step"], oracle_state["hyperparameters"]) == (
        flat_state["name"], flat_state["step"], flat_state["hyperparameters"])
    assert {key: set(value) for key, value in oracle_state["state"].items()} == {
        key: set(value) for key, value in flat_state["state"].items()}
    crossed_flat = {"sgd": SGD, "adam": Adam}[name](buffer, lr=1.0)
    crossed_flat.load_state_dict(oracle_state)
    crossed_oracle = PlannedReference({"sgd": reference.SGD, "adam": reference.Adam}[name](params, lr=1.0),
                                      lambda: current)
    crossed_oracle.load_state_dict(flat_state)
    assert crossed_oracle.state_dict()["hyperparameters"] == flat_state["hyperparameters"]
    steps(crossed_flat, crossed_oracle, grads[4:])
