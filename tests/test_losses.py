"""softmax_cross_entropy: finite differences, torch parity, stability, types."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import numerical_gradient, parity_tolerance, relative_error
from nets.losses import softmax_cross_entropy


def test_gradient_matches_finite_differences(backend):
    rng = numpy.random.default_rng(0)
    logits = backend.asarray(rng.standard_normal((5, 4)) * 3)
    labels = backend.asarray(numpy.array([0, 3, 1, 1, 2]))
    _, dlogits = softmax_cross_entropy(logits, labels)
    numeric = numerical_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits)
    numpy.testing.assert_allclose(backend.to_numpy(dlogits), numeric, rtol=1e-6, atol=1e-9)


def test_matches_torch_cross_entropy(backend, dtype):
    torch = torch_or_skip()
    rng = numpy.random.default_rng(1)
    logits_host = (rng.standard_normal((64, 10)) * 4).astype(dtype)
    labels_host = rng.integers(0, 10, size=64)
    loss, dlogits = softmax_cross_entropy(backend.asarray(logits_host), backend.asarray(labels_host))
    logits_torch = torch.from_numpy(logits_host).requires_grad_(True)
    loss_torch = torch.nn.functional.cross_entropy(logits_torch, torch.from_numpy(labels_host))
    loss_torch.backward()
    tolerance = parity_tolerance(dtype)
    assert relative_error(backend.to_numpy(loss), loss_torch.item()) < tolerance
    assert relative_error(backend.to_numpy(dlogits), logits_torch.grad.numpy()) < tolerance


def test_types_no_host_scalar_and_dtype_kept(backend, dtype):
    logits = backend.asarray(numpy.zeros((3, 5), dtype=dtype))
    loss, dlogits = softmax_cross_entropy(logits, backend.asarray(numpy.array([0, 1, 4], dtype=numpy.int32)))
    assert type(loss) is type(logits) and loss.shape == () and loss.dtype == dtype
    assert dlogits.dtype == dtype and dlogits.shape == (3, 5)
    assert float(loss) == pytest.approx(numpy.log(5), rel=1e-6)


def test_large_logits_are_stable(backend, dtype):
    logits = backend.asarray(numpy.array([[1e4, 0.0, -1e4], [-5e3, 5e3, 5e3]], dtype=dtype))
    loss, dlogits = softmax_cross_entropy(logits, backend.asarray(numpy.array([0, 1])))
    # row 1: loss 0; row 2: two equal logits win, loss log 2
    assert float(loss) == pytest.approx(numpy.log(2) / 2, rel=1e-5)
    assert numpy.isfinite(backend.to_numpy(dlogits)).all()
    numpy.testing.assert_allclose(backend.to_numpy(dlogits), [[0, 0, 0], [0, -0.25, 0.25]], atol=1e-6)


def test_bad_labels_are_clear_errors(backend):
    logits = backend.asarray(numpy.zeros((3, 5)))
    with pytest.raises(ValueError, match="one integer per row"):
        softmax_cross_entropy(logits, backend.asarray(numpy.zeros((3, 5), dtype=int)))
    with pytest.raises(ValueError, match="integers"):
        softmax_cross_entropy(logits, backend.asarray(numpy.zeros(3)))
