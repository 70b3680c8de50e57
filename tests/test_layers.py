"""Linear, ReLU, Flatten and the shared Layer plumbing (init, to(), dtype)."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import check_layer_gradients, parity_tolerance, relative_error, tie_free
from nets.nn.layers import Flatten, Layer, Linear, ReLU, he_or_torch_init


def test_linear_gradients_match_finite_differences(backend):
    rng = numpy.random.default_rng(0)
    layer = Linear(5, 4, rng=rng, init="torch", dtype="float64").to(backend)
    check_layer_gradients(layer, backend.asarray(rng.standard_normal((3, 5))), backend)


def test_relu_gradients_match_finite_differences(backend):
    rng = numpy.random.default_rng(1)
    check_layer_gradients(ReLU(), backend.asarray(tie_free(rng, (3, 2, 4))), backend)


def test_flatten_gradients_match_finite_differences(backend):
    rng = numpy.random.default_rng(2)
    layer = Flatten()
    x = backend.asarray(rng.standard_normal((2, 3, 2, 2)))
    assert layer.forward(x).shape == (2, 12)
    check_layer_gradients(layer, x, backend)


def test_flatten_uses_nchw_order(backend):
    x = numpy.arange(24.0).reshape(2, 3, 2, 2)
    numpy.testing.assert_array_equal(backend.to_numpy(Flatten().forward(backend.asarray(x))), x.reshape(2, 12))


def test_linear_matches_torch(backend, dtype):
    torch = torch_or_skip()
    rng = numpy.random.default_rng(3)
    layer = Linear(7, 5, rng=rng, dtype=dtype).to(backend)
    x_host = rng.standard_normal((4, 7)).astype(dtype)
    dy_host = rng.standard_normal((4, 5)).astype(dtype)
    y = layer.forward(backend.asarray(x_host))
    dx = layer.backward(backend.asarray(dy_host))
    reference = torch.nn.Linear(7, 5).to(getattr(torch, str(dtype)))
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(backend.to_numpy(layer.params["weight"])))
        reference.bias.copy_(torch.from_numpy(backend.to_numpy(layer.params["bias"])))
    x_torch = torch.from_numpy(x_host).requires_grad_(True)
    reference(x_torch).backward(torch.from_numpy(dy_host))
    tolerance = parity_tolerance(dtype)
    assert y.dtype == dtype and dx.dtype == dtype
    assert relative_error(backend.to_numpy(y), reference(x_torch).detach().numpy()) < tolerance
    assert relative_error(backend.to_numpy(dx), x_torch.grad.numpy()) < tolerance
    assert relative_error(backend.to_numpy(layer.grads["weight"]), reference.weight.grad.numpy()) < tolerance
    assert relative_error(backend.to_numpy(layer.grads["bias"]), reference.bias.grad.numpy()) < tolerance


def test_relu_matches_torch_including_zeros(backend, dtype):
    torch = torch_or_skip()
    x_host = numpy.array([[-1.0, 0.0, 2.0, -0.0, 3.5]], dtype=dtype)
    dy_host = numpy.array([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=dtype)
    layer = ReLU()
    y = layer.forward(backend.asarray(x_host))
    dx = layer.backward(backend.asarray(dy_host))
    x_torch = torch.from_numpy(x_host).requires_grad_(True)
    y_torch = torch.relu(x_torch)
    y_torch.backward(torch.from_numpy(dy_host))
    assert y.dtype == dtype and dx.dtype == dtype
    numpy.testing.assert_array_equal(backend.to_numpy(y), y_torch.detach().numpy())
    numpy.testing.assert_array_equal(backend.to_numpy(dx), x_torch.grad.numpy())


@pytest.mark.parametrize("init", ["he", "torch"])
def test_init_statistics_shapes_and_dtype(dtype, init):
    fan_in = 400
    weight, bias = he_or_torch_init(numpy.random.default_rng(4), (300, fan_in), fan_in, init, dtype)
    assert weight.shape == (300, fan_in) and bias.shape == (300,)
    assert weight.dtype == dtype and bias.dtype == dtype
    if init == "he":
        assert weight.std() == pytest.approx(numpy.sqrt(2 / fan_in), rel=0.02)
        assert not bias.any()
    else:
        bound = 1 / numpy.sqrt(fan_in)
        assert numpy.abs(weight).max() <= bound and numpy.abs(bias).max() <= bound
        assert weight.std() == pytest.approx(bound / numpy.sqrt(3), rel=0.02)
    with pytest.raises(ValueError, match="unknown init"):
        he_or_torch_init(numpy.random.default_rng(4), (3, 3), 3, "xavier", dtype)


def test_to_moves_parameters_and_keeps_dtype(backend, dtype):
    layer = Linear(3, 2, rng=numpy.random.default_rng(5), dtype=dtype).to(backend)
    assert type(layer.params["weight"]) is type(backend.xp.zeros(1))
    assert set(layer.grads) == {"weight", "bias"}
    assert all(array.dtype == dtype for array in [*layer.params.values(), *layer.grads.values()])
    y = layer.forward(backend.asarray(numpy.ones((4, 3), dtype=dtype)))
    assert y.dtype == dtype and layer.backward(y, need_input_grad=False) is None
    assert ReLU().params == {} and Flatten().grads == {}


def test_backward_before_forward_is_a_clear_error(backend):
    for layer in [Linear(2, 2, rng=numpy.random.default_rng(0)).to(backend), ReLU(), Flatten()]:
        with pytest.raises(RuntimeError, match="forward"):
            layer.backward(backend.asarray(numpy.ones((1, 2), dtype="float32")))


def test_wrong_input_shapes_are_clear_errors(backend):
    from nets.nn.layers import Conv2d, MaxPool2d

    rng = numpy.random.default_rng(0)
    with pytest.raises(ValueError, match=r"takes \(N, 3\) inputs, got shape \(2, 4\)"):
        Linear(3, 2, rng=rng).to(backend).forward(backend.asarray(numpy.ones((2, 4), dtype="float32")))
    with pytest.raises(ValueError, match=r"takes \(N, 2, H, W\) inputs, got shape \(1, 3, 5, 5\)"):
        Conv2d(2, 4, 3, rng=rng).to(backend).forward(backend.asarray(numpy.ones((1, 3, 5, 5), dtype="float32")))
    with pytest.raises(ValueError, match="MaxPool2d takes"):
        MaxPool2d(2).forward(backend.asarray(numpy.ones((4, 4), dtype="float32")))


@pytest.mark.parametrize("sizes, message", [
    ((0, 3), "Linear in_features must be a whole number >= 1, got 0."),
    ((3, -1), "Linear out_features must be a whole number >= 1, got -1."),
    ((3.5, 2), "Linear in_features must be a whole number >= 1, got 3.5."),
])
def test_linear_refuses_impossible_sizes_in_one_sentence(sizes, message):
    with pytest.raises(ValueError) as info:
        Linear(*sizes, rng=numpy.random.default_rng(0))
    assert str(info.value) == message


def test_a_new_layer_computes_on_the_host_before_any_to():
    rng = numpy.random.default_rng(0)
    linear = Linear(3, 2, rng=rng)
    assert linear.forward(numpy.ones((4, 3), dtype=numpy.float32)).shape == (4, 2)
    from nets.nn.layers import Conv2d

    conv = Conv2d(1, 2, 3, rng=rng)
    assert conv.forward(numpy.ones((1, 1, 5, 5), dtype=numpy.float32)).shape == (1, 2, 3, 3)


class Twins(Layer):
    """A layer whose twins say which of them ran: forward returns the twin's name, backward the pair's."""

    def forward_cpu(self, x, train=True, out=None):
        return "forward_cpu"

    def forward_gpu(self, x, train=True, out=None):
        return "forward_gpu"

    def backward_cpu(self, dy, need_input_grad=True):
        return "backward_cpu"

    def backward_gpu(self, dy, need_input_grad=True):
        return "backward_gpu"


def test_the_layer_base_chooses_a_twin_by_the_input_and_backward_follows_the_training_forward(backend):
    layer, x = Twins(), backend.asarray(numpy.zeros(2, dtype="float32"))
    native = "gpu" if backend.is_gpu else "cpu"
    other = "cpu" if native == "gpu" else "gpu"
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(x)
    assert layer.forward(x) == f"forward_{native}" and layer.backward(x) == f"backward_{native}"
    layer.twin = other  # forced: the other twin on this device
    assert layer.forward(x, train=False) == f"forward_{other}"
    assert layer.backward(x) == f"backward_{native}"  # an evaluation forward leaves backward's twin alone
    assert layer.forward(x) == f"forward_{other}" and layer.backward(x) == f"backward_{other}"
    layer.twin = "tpu"
    with pytest.raises(ValueError, match=r"Twins.twin is 'tpu'; it must be one of \('cpu', 'gpu'\) or None."):
        layer.forward(x)
