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
    loss_axes, accuracy_axes, rate_axes = figure.axes
    assert accuracy_axes.get_ylabel() == "accuracy (%)"
    test_line = [line for line in accuracy_axes.get_lines() if line.get_label() == "test"][0]
    numpy.testing.assert_allclose(test_line.get_ydata(), [60 + k for k in range(1, 21)])
    for axes in (loss_axes, accuracy_axes, rate_axes):
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


def onecycle_metrics(epochs: int = 3, images: int = 1000, batch: int = 100, peak: float = 0.01, test_loss=True):
    """Metrics as train.py writes them for a one-cycle run of `epochs` over `images` images."""
    from nets.optim.schedules import learning_rate

    steps = -(-images // batch)
    records = []
    for epoch in range(1, epochs + 1):
        record = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.5, "test_accuracy": 0.6,
                  "seconds": 2.0, "images_per_second": images / 2.0,
                  "lr_end": learning_rate("onecycle", peak, epoch * steps - 1, epochs * steps)}
        if test_loss:
            record["test_loss"] = 1.2 / epoch
        records.append(record)
    return {"model": "cnn", "impl": "nets", "dataset": "mnist", "schedule": "onecycle", "lr": peak,
            "batch_size": batch, "epochs": records}


def test_the_learning_rate_panel_draws_the_schedule_step_by_step():
    from nets.report.curves import learning_rate_per_step

    metrics = onecycle_metrics()
    epochs, rates = learning_rate_per_step(metrics)
    assert len(rates) == 30 and epochs[-1] == 3.0  # 10 steps per epoch, each ending at step / 10 epochs
    assert max(rates) == pytest.approx(0.01) and rates[0] == pytest.approx(0.01 / 25)
    for record in metrics["epochs"]:  # the curve passes through each recorded epoch's end
        assert rates[list(epochs).index(record["epoch"])] == pytest.approx(record["lr_end"])
    rate_axes = plots.training_curves_figure(metrics).axes[2]
    assert rate_axes.get_title() == "learning rate (onecycle, peak 0.01)"
    assert [line.get_label() for line in rate_axes.get_lines()] == ["each step", "epoch's end"]
    # a run still under way (its 20 epochs planned, 3 done) is recognised by its recorded rates
    planned = onecycle_metrics(epochs=20)
    planned["epochs"] = planned["epochs"][:3]
    assert learning_rate_per_step(planned)[0][-1] == 20.0


def test_without_what_the_schedule_needs_the_panel_shows_the_recorded_rates():
    from nets.report.curves import learning_rate_per_step

    metrics = onecycle_metrics()
    del metrics["batch_size"]
    assert learning_rate_per_step(metrics) is None
    rate_axes = plots.training_curves_figure(metrics).axes[2]
    assert rate_axes.get_title() == "learning rate at each epoch's end"
    assert [line.get_label() for line in rate_axes.get_lines()] == ["epoch's end"]
    wrong = onecycle_metrics()
    wrong["epochs"][1]["lr_end"] *= 2  # not what the schedule gives: the curve would be a guess
    assert learning_rate_per_step(wrong) is None


@pytest.mark.parametrize("test_loss", [True, False])
def test_the_loss_panel_draws_test_loss_when_the_metrics_have_it(test_loss):
    loss_axes = plots.training_curves_figure(onecycle_metrics(test_loss=test_loss)).axes[0]
    labels = [line.get_label() for line in loss_axes.get_lines()]
    assert labels == (["train", "test"] if test_loss else ["train"])
    assert loss_axes.get_title() == ("train and test loss" if test_loss else "training loss")


def test_one_epoch_gets_whole_epoch_ticks_only():
    figure = plots.training_curves_figure(onecycle_metrics(epochs=1))
    for axes in figure.axes:
        ticks = axes.get_xticks()
        assert ticks.size and all(float(tick).is_integer() for tick in ticks), ticks
    assert list(figure.axes[0].get_xticks()) == [1]


@pytest.mark.parametrize("shape, title", [
    ((128, 784), "first-layer weights: the first 64 of 128 units of fc1, each one's 784 weights as 28x28"),
    ((32, 784), "first-layer weights: all 32 units of fc1, each one's 784 weights as 28x28"),
    ((16, 1, 3, 3), "first-layer weights: all 16 kernels of conv1, 3x3 each"),
    ((8, 3, 5, 5), "first-layer weights: all 8 kernels of conv1, 5x5 each, averaged over 3 input channels"),
])
def test_the_filter_plot_says_what_it_shows(shape, title):
    figure = plots.first_layer_filters_figure(numpy.random.default_rng(0).normal(size=shape))
    assert figure.axes[0].get_title() == title


def test_misclassified_images_are_drawn_light_on_black_as_the_model_sees_them():
    images = numpy.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=numpy.uint8)
    true = numpy.arange(50) % 10
    predicted = (true + (numpy.arange(50) % 5 == 0)) % 10
    figure = plots.misclassified_figure(images, true, predicted, class_names_for("mnist"))
    drawn = [axes.get_images()[0] for axes in figure.axes if axes.get_images()]
    assert len(drawn) == 10  # every fifth of 50 is wrong
    assert all(image.get_cmap().name == "gray" and image.get_clim() == (0, 255) for image in drawn)
    assert figure.get_suptitle() == "test images the model got wrong (all 10), as it saw them: true -> predicted"
    floats = plots.misclassified_figure(images / 255.0, true, predicted, class_names_for("mnist"), limit=4)
    assert [axes.get_images()[0].get_clim() for axes in floats.axes if axes.get_images()] == [(0, 1.0)] * 4
    assert "the first 4 of 10" in floats.get_suptitle()


def test_the_confusion_matrix_says_what_it_counts():
    figure = plots.confusion_matrix_figure(numpy.arange(100).reshape(10, 10), class_names_for("mnist"))
    assert figure.axes[0].get_title() == ("confusion matrix: 4,950 test images, rows the true class, columns the "
                                          "predicted one")
