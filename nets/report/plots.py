"""PNG plots of a training run: curves, confusion matrix, first-layer filters, misclassified test images.

    paths = write_all_plots("runs/cnn/plots", metrics, model, dataset.test_images, dataset.test_labels,
                            predictions, class_names)

matplotlib is imported lazily (it is the `plot` extra) and drawn with the Agg canvas, never pyplot,
so plotting works without a display and leaves no global figure state behind.
Without matplotlib every function raises PlotError with one line saying how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy

from nets.commands import install_hint
from nets.errors import NetsError

__all__ = [
    "PlotError",
    "plot_confusion_matrix",
    "plot_first_layer_filters",
    "plot_misclassified",
    "plot_training_curves",
    "first_layer_filters_figure",
    "training_curves_figure",
    "write_all_plots",
]



def matplotlib_missing() -> str:
    return f"matplotlib is not installed; install it with `{install_hint('plot')}`."


class PlotError(NetsError, RuntimeError):
    """A plot cannot be drawn (matplotlib missing, nothing to plot); the message says what to do."""


def require_matplotlib() -> None:
    """Raise PlotError (one line, with the install command) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(matplotlib_missing()) from None


def _new_figure(width: float, height: float):
    """A matplotlib Figure attached to an Agg canvas; PlotError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(matplotlib_missing()) from None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, format="png")
    except OSError as error:
        raise PlotError(f"cannot write {path} ({error.strerror or error}); choose another folder.") from error
    return path


def _host(array) -> numpy.ndarray:
    """Any backend's array -> numpy (plots are drawn on the host)."""
    from backend import to_numpy

    return to_numpy(array)


def plot_training_curves(metrics: dict, path) -> Path:
    """Training loss (left) and train/test accuracy (right) per epoch, from the training metrics dict."""
    return _save(training_curves_figure(metrics), path)


def _curves_title(metrics: dict, epochs: list) -> str:
    """"cnn (nets) on Fashion-MNIST: test accuracy 92.51% after 20 epochs", as much of it as the metrics say."""
    from nets.data.datasets import TITLES

    model = " ".join(([str(metrics["model"])] if metrics.get("model") else []) +
                     ([f"({metrics['impl']})"] if metrics.get("impl") else []))
    dataset = TITLES.get(metrics.get("dataset"), metrics.get("dataset"))
    title = " on ".join(part for part in (model, dataset) if part)
    accuracy = metrics.get("test_accuracy", epochs[-1].get("test_accuracy"))
    if isinstance(accuracy, (int, float)):
        last = epochs[-1].get("epoch", len(epochs))
        result = f"test accuracy {100 * accuracy:.2f}% after {last} epoch{'s' if last != 1 else ''}"
        title = f"{title}: {result}" if title else result
    return title


def training_curves_figure(metrics: dict):
    """The figure of plot_training_curves: epochs on whole-number ticks, accuracy in percent, the model,
    dataset and final test accuracy in the title."""
    epochs = metrics.get("epochs") or []
    if not epochs:
        raise PlotError("the metrics have no epochs to plot; train for at least one epoch first.")
    numbers = [entry.get("epoch", k + 1) for k, entry in enumerate(epochs)]

    def series(key):
        values = [entry.get(key) for entry in epochs]
        return None if all(value is None for value in values) else [numpy.nan if v is None else v for v in values]

    figure = _new_figure(10, 4)
    from matplotlib.ticker import MaxNLocator

    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss = series("train_loss")
    if loss is not None:
        loss_axes.plot(numbers, loss, marker="o", label="train loss")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="training loss")
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        values = series(key)
        if values is not None:
            accuracy_axes.plot(numbers, 100 * numpy.asarray(values, dtype=numpy.float64), marker="o", label=label)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5 or 7.5
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    title = _curves_title(metrics, epochs)
    if title:
        figure.suptitle(title)
    return figure


def plot_confusion_matrix(matrix, class_names: list[str], path) -> Path:
    """The (K, K) confusion matrix as a heat map with the counts written in; rows true, columns predicted."""
    matrix = numpy.asarray(matrix)
    figure = _new_figure(8, 7)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = numpy.arange(matrix.shape[0])
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set(xlabel="predicted class", ylabel="true class", title="confusion matrix")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            count = int(matrix[row, column])
            axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if count > threshold else "black")
    return _save(figure, path)


def _filter_images(weights: numpy.ndarray) -> numpy.ndarray:
    """First-layer weights -> (M, H, W) images: conv (F, C, KH, KW) -> F kernels (channels averaged);
    linear (out, 784) or (784, out) -> the first 64 units as 28x28."""
    if weights.ndim == 4:
        return weights.mean(axis=1)
    if weights.ndim == 2 and 784 in weights.shape:
        rows = weights if weights.shape[1] == 784 else weights.T
        return rows[:64].reshape(-1, 28, 28)
    raise PlotError(
        f"cannot draw first-layer weights of shape {weights.shape}; expected conv1.weight (F, C, KH, KW) "
        "or fc1.weight (units, 784)."
    )


def _grid(count: int) -> tuple[int, int]:
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def _mosaic(images: numpy.ndarray, columns: int) -> numpy.ndarray:
    """(M, H, W) -> one image of the M tiles in rows of `columns`, values as they are, nan between tiles."""
    count, height, width = images.shape
    rows = math.ceil(count / columns)
    canvas = numpy.full((rows * (height + 1) - 1, columns * (width + 1) - 1), numpy.nan)
    for index, tile in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * (height + 1):row * (height + 1) + height, column * (width + 1):column * (width + 1) + width] = tile
    return canvas


def plot_first_layer_filters(weights, path) -> Path:
    """conv1.weight (16, 1, 3, 3) as a grid of kernels, or an MLP's fc1.weight rows (first 64) as 28x28 images."""
    return _save(first_layer_filters_figure(weights), path)


def first_layer_filters_figure(weights):
    """The figure of plot_first_layer_filters: every filter on one colour scale (blue negative, red positive,
    white zero), symmetric about 0 and as wide as the largest weight shown, with its colour bar."""
    images = _filter_images(_host(weights).astype(numpy.float64))
    columns = _grid(len(images))[1]
    mosaic = _mosaic(images, columns)
    limit = float(numpy.abs(images).max()) or 1.0
    figure = _new_figure(6.8, 6 * mosaic.shape[0] / mosaic.shape[1] + 0.6)
    from matplotlib import colormaps

    axes = figure.subplots()
    shown = axes.imshow(mosaic, cmap=colormaps["bwr"].with_extremes(bad="0.6"), vmin=-limit, vmax=limit,
                        interpolation="nearest")
    figure.colorbar(shown, ax=axes, shrink=0.8, label="weight")
    axes.set_axis_off()
    axes.set_title(f"first-layer filters ({len(images)}, each {images.shape[1]}x{images.shape[2]})")
    return figure


def plot_misclassified(images, true, predicted, class_names: list[str], path, limit: int = 36) -> Path:
    """The first `limit` test images the model got wrong, titled "true -> predicted".

    images: (N, 28, 28), (N, 784) or (N, 1, 28, 28); true, predicted: (N,) class indices.
    """
    images = _host(images)
    true = _host(true).astype(numpy.int64).ravel()
    predicted = _host(predicted).astype(numpy.int64).ravel()
    wrong = numpy.flatnonzero(true != predicted)[:limit]
    if len(wrong) == 0:
        figure = _new_figure(4, 2)
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return _save(figure, path)
    pictures = images[wrong].reshape(len(wrong), 28, 28)
    rows, columns = _grid(len(wrong))
    figure = _new_figure(1.6 * columns + 0.5, 1.8 * rows + 0.6)
    figure.suptitle(f"misclassified: true -> predicted (first {len(wrong)})")
    for index, axes in enumerate(numpy.atleast_1d(figure.subplots(rows, columns)).ravel()):
        axes.set_axis_off()
        if index < len(wrong):
            k = wrong[index]
            axes.imshow(pictures[index], cmap="gray_r", interpolation="nearest")
            axes.set_title(f"{class_names[true[k]]} -> {class_names[predicted[k]]}", fontsize=7)
    return _save(figure, path)


def _first_layer_weights(model):
    """conv1.weight for the CNN, fc1.weight for the MLP; `model` is a model or its parameter dict."""
    parameters = model if isinstance(model, Mapping) else model.parameters()
    for name in ("conv1.weight", "fc1.weight"):
        if name in parameters:
            return parameters[name]
    return next(iter(parameters.values()))


def write_all_plots(out_dir, metrics, model, test_images, test_labels, predictions, class_names) -> list[Path]:
    """Write every plot into `out_dir` and return their paths.

    training_curves.png (skipped when `metrics` has no epochs), confusion_matrix.png,
    first_layer_filters.png, misclassified.png.
    model: a model, or its parameters as a dict (name -> array, e.g. model.state_dict()).
    test_images: (N, 28, 28) as in the dataset; test_labels, predictions: (N,) class indices.
    """
    from nets.report.evaluation import confusion_matrix

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PlotError(f"cannot create the folder {out_dir} ({error.strerror or error}); choose another.") from error
    class_names = list(class_names) if class_names else [str(k) for k in range(10)]
    labels = _host(test_labels)
    predictions = _host(predictions)
    paths = []
    if metrics and metrics.get("epochs"):
        paths.append(plot_training_curves(metrics, out_dir / "training_curves.png"))
    matrix = confusion_matrix(labels, predictions, num_classes=len(class_names))
    paths.append(plot_confusion_matrix(matrix, class_names, out_dir / "confusion_matrix.png"))
    paths.append(plot_first_layer_filters(_first_layer_weights(model), out_dir / "first_layer_filters.png"))
    paths.append(plot_misclassified(test_images, labels, predictions, class_names, out_dir / "misclassified.png"))
    return paths
