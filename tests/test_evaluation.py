"""nets.report.evaluation and nets.nn.inference: confusion matrix, per-class accuracy, batched prediction on the
device, text tables."""

import numpy
import pytest

from nets.data.datasets import to_model_input
from nets.nn.inference import count_correct, predict_classes, predict_probabilities
from nets.nn.models import build_model
from nets.report.evaluation import (class_names_for, confusion_matrix, dataset_name_of, evaluate,
                                    format_confusion_matrix, format_report, per_class_accuracy, top_classes)


def test_confusion_matrix_by_hand():
    true = [0, 0, 1, 1, 1, 2]
    predicted = [0, 1, 1, 1, 2, 2]
    matrix = confusion_matrix(true, predicted, num_classes=3)
    numpy.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert matrix.dtype == numpy.int64
    numpy.testing.assert_allclose(per_class_accuracy(matrix), [0.5, 2 / 3, 1.0])


def test_class_without_images_has_nan_accuracy():
    matrix = confusion_matrix([0, 0, 1], [0, 1, 0], num_classes=3)
    accuracies = per_class_accuracy(matrix)
    assert accuracies[0] == 0.5 and accuracies[1] == 0.0 and numpy.isnan(accuracies[2])


def test_confusion_matrix_refuses_bad_labels():
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="0..9"):
        confusion_matrix([0, 10], [0, 1])


def test_text_table_rows_and_columns():
    matrix = confusion_matrix([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2], num_classes=3)
    table = format_confusion_matrix(matrix, ["cat", "dog", "bird"]).splitlines()
    assert len(table) == 4
    assert table[0].split()[-3:] == ["0", "1", "2"]
    assert table[1].split() == ["0", "cat", "1", "1", "0"]
    assert table[2].split() == ["1", "dog", "0", "2", "1"]
    assert table[3].split() == ["2", "bird", "0", "0", "1"]
    digits = format_confusion_matrix(matrix).splitlines()
    assert digits[1].split() == ["0", "1", "1", "0"]


def test_fashion_class_names_fit_the_table():
    names = class_names_for("fashion-mnist")
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    assert class_names_for("mnist") == [str(k) for k in range(10)]
    table = format_confusion_matrix(numpy.eye(10, dtype=numpy.int64) * 1000, names).splitlines()
    assert len(table) == 11
    assert table[10].startswith("9 Ankle boot") and table[10].endswith(" 1000")
    assert len({len(line) for line in table}) == 1  # columns line up
    assert len(table[0]) < 80  # fits a terminal


class FixedModel:
    """Predicts class = the brightest pixel's index mod 10; enough to check batching and transfers."""

    name = "fixed"
    input_shape = (784,)
    dtype = numpy.dtype("float32")

    def __init__(self, backend):
        self.backend = backend
        self.batches = []

    def predict(self, x):
        assert x.shape[1:] == self.input_shape and x.dtype == self.dtype
        self.batches.append(x.shape[0])
        xp = self.backend.xp
        logits = xp.zeros((x.shape[0], 10), dtype=self.dtype)
        logits[xp.arange(x.shape[0]), xp.argmax(x, axis=1) % 10] = 5.0
        return logits


def images_for_classes(classes):
    images = numpy.zeros((len(classes), 28, 28), dtype=numpy.uint8)
    images.reshape(len(classes), 784)[numpy.arange(len(classes)), classes] = 255
    return images


def test_evaluate_in_batches(backend):
    labels = numpy.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3], dtype=numpy.uint8)
    predicted = numpy.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4])
    model = FixedModel(backend)
    result = evaluate(model, images_for_classes(predicted), labels, batch_size=4)
    assert model.batches == [4, 4, 3]
    assert isinstance(result.predictions, numpy.ndarray)
    numpy.testing.assert_array_equal(result.predictions, predicted)
    assert result.accuracy == pytest.approx(10 / 11)
    assert result.per_class_accuracy[3] == 0.5
    assert result.confusion_matrix[3, 4] == 1
    report = format_report(result)
    assert "test accuracy: 90.91% (10/11)" in report
    assert "rows: true class" in report
    assert result.to_dict()["confusion_matrix"][3][4] == 1


def test_probabilities_and_top_classes(backend):
    probabilities = predict_probabilities(FixedModel(backend), images_for_classes([7, 2]))
    assert probabilities.shape == (2, 10)
    numpy.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    best = top_classes(probabilities, 2)
    assert [guess[0][0] for guess in best] == [7, 2]
    assert best[0][0][1] == pytest.approx(numpy.exp(5) / (numpy.exp(5) + 9), rel=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_real_models_on_the_device(backend, name):
    model = build_model(name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    images = numpy.random.default_rng(1).integers(0, 256, size=(7, 28, 28), dtype=numpy.uint8)
    predictions = predict_classes(model, images, batch_size=3)
    assert predictions.shape == (7,) and predictions.dtype == numpy.int64
    logits = backend.to_numpy(model.forward(to_model_input(images, model.input_shape, model.dtype)))
    numpy.testing.assert_array_equal(predictions, logits.argmax(axis=1))
    # a test set already on the device, as a training run keeps it: the same answers, counted there
    prepared = backend.asarray(to_model_input(images, model.input_shape, model.dtype))
    numpy.testing.assert_array_equal(predict_classes(model, prepared, batch_size=4), predictions)
    labels = predictions.copy()
    labels[:3] = (labels[:3] + 1) % 10
    assert count_correct(model, prepared, backend.asarray(labels), batch_size=4) == 4


def test_dataset_name_of_checkpoint():
    class Saved:
        config = {"dataset": "fashion-mnist"}

    assert dataset_name_of(Saved()) == "fashion-mnist"
    Saved.config = {}
    assert dataset_name_of(Saved()) == "mnist"
