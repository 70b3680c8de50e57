"""DataParallel: replicas on CPU threads compute exactly what one pass over the whole batch does."""

import numpy
import pytest

import backend as backend_module
from nets.engines import NetsEngine
from nets.models import build_model
from nets.optim import Adam
from nets.parallel import DataParallel
from tests.layer_checks import mnist_like_images


def model_and_batch(name, count, dtype="float64", seed=0):
    cpu = backend_module.get_backend("cpu")
    model = build_model(name, backend=cpu, dtype=dtype, rng=numpy.random.default_rng(seed))
    rng = numpy.random.default_rng(seed + 1)
    images = mnist_like_images(rng, count).astype(dtype)  # mostly exact zeros: ties in the pooling
    x = images.reshape(count, *model.input_shape)
    labels = rng.integers(0, 10, count)
    return model, x, labels


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("count, workers", [(64, 2), (70, 2), (99, 3)])
def test_split_batch_gives_the_whole_batch_loss_gradients_and_logits(name, count, workers):
    model, x, labels = model_and_batch(name, count)
    loss, logits = model.loss_and_gradients(x, labels)
    expected = {key: value.copy() for key, value in model.gradients().items()}
    parallel = DataParallel(model, workers, min_per_worker=16)
    parallel_loss, parallel_logits = parallel.loss_and_gradients(x, labels)
    assert parallel._split_last
    numpy.testing.assert_allclose(parallel_loss, loss, rtol=1e-12)
    numpy.testing.assert_allclose(parallel_logits, logits, rtol=1e-12, atol=1e-12)
    for key, value in parallel.gradients().items():
        numpy.testing.assert_allclose(value, expected[key], rtol=1e-10, atol=1e-14, err_msg=key)
    numpy.testing.assert_allclose(parallel.forward(x, train=False), model.forward(x, train=False), rtol=1e-12)


def test_small_batches_run_unsplit_on_the_model():
    model, x, labels = model_and_batch("cnn", 40)
    parallel = DataParallel(model, 2, min_per_worker=32)
    parallel.loss_and_gradients(x, labels)
    assert not parallel._split_last
    assert parallel.gradients() is not None and set(parallel.gradients()) == set(model.parameters())
    numpy.testing.assert_array_equal(parallel.gradients()["fc2.bias"], model.gradients()["fc2.bias"])


def test_replicas_share_the_parameters_an_optimizer_updates():
    model, x, labels = model_and_batch("cnn", 64, dtype="float32")
    parallel = DataParallel(model, 2, min_per_worker=16)
    optimizer = Adam(model.parameters(), lr=0.1)
    parallel.loss_and_gradients(x, labels)
    optimizer.step(parallel.gradients())
    for replica in parallel.replicas:
        for key, value in replica.parameters().items():
            assert value is model.parameters()[key]
    assert parallel.name == "cnn" and parallel.dtype == model.dtype  # everything else comes from the model


def test_a_training_step_matches_with_and_without_workers():
    results = []
    for workers in (1, 2):
        model, x, labels = model_and_batch("cnn", 64)
        engine = NetsEngine(model, Adam(model.parameters(), lr=1e-3), backend_module.get_backend("cpu"),
                            workers=workers)
        assert (engine.stepper is model) == (workers == 1)
        for _ in range(3):
            loss, correct = engine.train_step(x, labels)
        results.append((float(loss), int(correct), model.state_dict()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-10)
    assert results[0][1] == results[1][1]
    for key in results[0][2]:
        numpy.testing.assert_allclose(results[0][2][key], results[1][2][key], rtol=1e-8, atol=1e-12, err_msg=key)
