"""softmax_cross_entropy and the training head: finite differences, torch parity, stability, types, totals."""

import numpy
import pytest

from conftest import torch_or_skip
from layer_checks import numerical_gradient, parity_tolerance, relative_error
from nets.nn.losses import SoftmaxCrossEntropy, softmax_cross_entropy


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


def test_labels_outside_the_classes_are_refused_like_torch():
    logits = numpy.zeros((3, 5))
    for bad, shown in (([0, -1, 2], "label -1 at index 1"), ([0, 1, 5], "label 5 at index 2")):
        with pytest.raises(ValueError) as error:
            softmax_cross_entropy(logits, numpy.array(bad))
        assert shown in str(error.value) and "outside 0..4" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_the_training_head_matches_the_reference_and_keeps_totals(backend, dtype, scale):
    rng = numpy.random.default_rng(2)
    head = SoftmaxCrossEntropy(classes=10)
    expected_loss, expected_hits = 0.0, 0
    for n in (16, 16, 7, 16):  # two batch sizes, each with its workspace
        logits_host = (rng.standard_normal((n, 10)) * scale).astype(dtype)
        labels_host = rng.integers(0, 10, size=n)
        logits_host[0, labels_host[0]] = logits_host[0].max() + 1  # at least one hit
        logits, labels = backend.asarray(logits_host), backend.asarray(labels_host)
        dlogits = head(logits, labels)
        loss, reference = softmax_cross_entropy(logits, labels)
        assert dlogits.dtype == dtype
        numpy.testing.assert_allclose(backend.to_numpy(dlogits), backend.to_numpy(reference),
                                      rtol=parity_tolerance(dtype), atol=parity_tolerance(dtype) / n)
        expected_loss += float(loss) * n
        expected_hits += int((logits_host.argmax(axis=1) == labels_host).sum())
    loss_sum, hits = head.totals()
    assert loss_sum == pytest.approx(expected_loss, rel=1e-5 if dtype == numpy.float32 else 1e-12)
    assert hits == expected_hits and hits > 0
    head.reset()
    assert head.totals() == (0.0, 0)


def test_the_training_head_keeps_its_buffers_and_does_not_sync(standin_gpu):
    xp, head = standin_gpu.xp, SoftmaxCrossEntropy(classes=10)
    rng = numpy.random.default_rng(3)
    logits = standin_gpu.asarray(rng.standard_normal((128, 10)).astype(numpy.float32))
    labels = standin_gpu.asarray(rng.integers(0, 10, size=128))
    first = head(logits, labels)
    mark = xp.counter.mark()
    second = head(logits, labels)
    tally = xp.counter.since(mark)
    assert second is first  # a stable home: the workspace of this batch size
    assert tally.syncs == 0 and tally.transfers == 0
    assert tally.launches == 12, tally.by_site()
    mark = xp.counter.mark()
    head.totals()
    assert xp.counter.since(mark).syncs == 1
