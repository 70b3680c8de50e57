"""nets.report.plots: every plot writes a non-empty PNG; without matplotlib, one line says how to install it."""

import sys

import numpy
import pytest

from nets.commands import install_hint
from nets.report import plots
from nets.report.evaluation import class_names_for
from nets.nn.models import build_model

pytest.importorskip("matplotlib", reason="matplotlib is not installed; pip install -e .[plot]")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METRICS = {
    "model": "cnn",
    "impl": "nets",
    "test_accuracy": 0.9,
    "epochs": [
        {"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "test_accuracy": 0.8, "seconds": 1.0,
         "images_per_second": 100.0},
        {"epoch": 2, "train_loss": 0.4, "train_accuracy": 0.85, "test_accuracy": 0.9, "seconds": 1.0,
         "images_per_second": 100.0},
    ],
}


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_training_curves(tmp_path):
    assert_png(plots.plot_training_curves(METRICS, tmp_path / "curves.png"))


def test_training_curves_need_epochs(tmp_path):
    with pytest.raises(plots.PlotError, match="no epochs"):
        plots.plot_training_curves({"epochs": []}, tmp_path / "curves.png")


def test_confusion_matrix(tmp_path):
    matrix = numpy.random.default_rng(0).integers(0, 50, size=(10, 10))
    assert_png(plots.plot_confusion_matrix(matrix, class_names_for("fashion-mnist"), tmp_path / "cm.png"))


def test_first_layer_filters_conv_and_linear(tmp_path):
    conv = numpy.random.default_rng(0).normal(size=(16, 1, 3, 3))
    assert_png(plots.plot_first_layer_filters(conv, tmp_path / "conv.png"))
    linear = numpy.random.default_rng(0).normal(size=(128, 784)).astype(numpy.float32)
    assert_png(plots.plot_first_layer_filters(linear, tmp_path / "linear.png"))
    with pytest.raises(plots.PlotError, match="cannot draw"):
        plots.plot_first_layer_filters(numpy.zeros((3, 5)), tmp_path / "bad.png")


def test_misclassified(tmp_path):
    images = numpy.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=numpy.uint8)
    true = numpy.arange(50) % 10
    predicted = true.copy()
    predicted[::3] = (predicted[::3] + 1) % 10
    assert_png(plots.plot_misclassified(images, true, predicted, class_names_for("mnist"), tmp_path / "wrong.png"))
    assert_png(plots.plot_misclassified(images, true, true, class_names_for("mnist"), tmp_path / "none.png"))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_write_all_plots(tmp_path, backend, name):
    model = build_model(name, backend=backend, dtype="float32", rng=numpy.random.default_rng(0))
    images = numpy.random.default_rng(1).integers(0, 256, size=(20, 28, 28), dtype=numpy.uint8)
    labels = numpy.arange(20) % 10
    predictions = (labels + (labels % 4 == 0)) % 10
    paths = plots.write_all_plots(tmp_path / "plots", METRICS, model, images, labels, predictions,
                                  class_names_for("mnist"))
    assert [path.name for path in paths] == [
        "training_curves.png", "confusion_matrix.png", "first_layer_filters.png", "misclassified.png"]
    for path in paths:
        assert_png(path)
    # the training CLI passes the parameter dict instead of the model, and may have no metrics
    paths = plots.write_all_plots(tmp_path / "again", None, model.state_dict(), images, labels, predictions, None)
    assert len(paths) == 3


def test_missing_matplotlib_is_one_line(tmp_path, monkeypatch):
    for module in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    with pytest.raises(plots.PlotError) as caught:
        plots.plot_training_curves(METRICS, tmp_path / "curves.png")
    assert str(caught.value) == f"matplotlib is not installed; install it with `{install_hint('plot')}`."


def test_training_curves_say_the_dataset_and_final_accuracy_with_whole_epochs_and_percent():
    metrics = {**METRICS, "dataset": "fashion-mnist", "test_accuracy": 0.9251,
               "epochs": [{"epoch": k, "train_loss": 1.0 / k, "train_accuracy": 0.5 + k / 100,
                           "test_accuracy": 0.6 + k / 100} for k in range(1, 21)]}
    figure = plots.training_curves_figure(metrics)
    assert figure.get_suptitle() == "cnn (nets) on Fashion-MNIST: test accuracy 92.51% after 20 epochs"
    loss_axes, accuracy_axes = figure.axes
    assert accuracy_axes.get_ylabel() == "accuracy (%)"
    test_line = [line for line in accuracy_axes.get_lines() if line.get_label() == "test"][0]
    numpy.testing.assert_allclose(test_line.get_ydata(), [60 + k for k in range(1, 21)])
    for axes in (loss_axes, accuracy_axes):
        ticks = axes.get_xticks()
        assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
    two = plots.training_curves_figure(METRICS)  # 2 epochs: matplotlib alone would tick 1.2, 1.4, ...
    assert all(float(tick).is_integer() for axes in two.axes for tick in axes.get_xticks())
    assert two.get_suptitle() == "cnn (nets): test accuracy 90.00% after 2 epochs"
    bare = plots.training_curves_figure({"model": "mlp", "epochs": METRICS["epochs"]})  # as a hand-made JSON
    assert bare.get_suptitle() == "mlp: test accuracy 90.00% after 2 epochs"


@pytest.mark.parametrize("shape", [(16, 1, 3, 3), (128, 784)])
def test_first_layer_filters_share_one_colour_scale_with_a_colour_bar(shape):
    weights = numpy.random.default_rng(0).normal(scale=0.1, size=shape)
    weights.flat[5] = 3.5  # the largest weight shown sets the scale
    figure = plots.first_layer_filters_figure(weights)
    image_axes, bar_axes = figure.axes
    assert bar_axes.get_ylabel() == "weight"
    assert image_axes.get_images()[0].get_clim() == (-3.5, 3.5)
