"""PNG plots of a training run: curves, confusion matrix, first-layer filters, misclassified test images.

    paths = write_all_plots("runs/cnn/plots", metrics, model, dataset.test_images, dataset.test_labels,
                            predictions, class_names)

Each title says what is drawn. matplotlib is imported lazily (it is the `plot` extra) and drawn with the Agg
canvas, never pyplot (nets/report/figures.py); the training curves are in nets/report/curves.py.
Without matplotlib every function raises PlotError with one line saying how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy

from nets.report.curves import plot_training_curves, training_curves_figure
from nets.report.figures import PlotError, host as _host, new_figure as _new_figure, require_matplotlib, save as _save

__all__ = [
    "PlotError",
    "confusion_matrix_figure",
    "plot_confusion_matrix",
    "plot_first_layer_filters",
    "plot_misclassified",
    "plot_training_curves",
    "first_layer_filters_figure",
    "misclassified_figure",
    "require_matplotlib",
    "training_curves_figure",
    "write_all_plots",
]

FILTER_UNITS = 64  # the MLP's first-layer units drawn (of 128 by default): an 8x8 grid of 28x28 images


def plot_confusion_matrix(matrix, class_names: list[str], path) -> Path:
    """The (K, K) confusion matrix as a heat map with the counts written in; rows true, columns predicted."""
    return _save(confusion_matrix_figure(matrix, class_names), path)


def confusion_matrix_figure(matrix, class_names: list[str]):
    """The figure of plot_confusion_matrix."""
    matrix = numpy.asarray(matrix)
    figure = _new_figure(8, 7)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = numpy.arange(matrix.shape[0])
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    total = int(matrix.sum())
    axes.set(xlabel="predicted class", ylabel="true class",
             title=f"confusion matrix: {total:,} test images, rows the true class, columns the predicted one")
    threshold = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            count = int(matrix[row, column])
            axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if count > threshold else "black")
    return figure


def _filter_images(weights: numpy.ndarray) -> tuple[numpy.ndarray, str]:
    """First-layer weights -> ((M, H, W) images, what they are, for the title): conv (F, C, KH, KW) -> the F kernels
    (channels averaged); linear (out, 784) or (784, out) -> the first FILTER_UNITS units as 28x28."""
    if weights.ndim == 4:
        count, channels, height, width = weights.shape
        averaged = f", averaged over {channels} input channels" if channels > 1 else ""
        return weights.mean(axis=1), f"all {count} kernels of conv1, {height}x{width} each{averaged}"
    if weights.ndim == 2 and 784 in weights.shape:
        rows = weights if weights.shape[1] == 784 else weights.T
        shown = min(FILTER_UNITS, len(rows))
        which = f"the first {shown} of {len(rows)} units" if shown < len(rows) else f"all {shown} units"
        return rows[:shown].reshape(-1, 28, 28), f"{which} of fc1, each one's 784 weights as 28x28"
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
    """conv1.weight (16, 1, 3, 3) as a grid of kernels, or an MLP's fc1.weight rows (the first 64) as 28x28 images."""
    return _save(first_layer_filters_figure(weights), path)


def first_layer_filters_figure(weights):
    """The figure of plot_first_layer_filters: every filter on one colour scale (blue negative, red positive,
    white zero), symmetric about 0 and as wide as the largest weight shown, with its colour bar."""
    images, what = _filter_images(_host(weights).astype(numpy.float64))
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
    axes.set_title(f"first-layer weights: {what}")
    return figure


def plot_misclassified(images, true, predicted, class_names: list[str], path, limit: int = 36) -> Path:
    """The first `limit` test images the model got wrong, titled "true -> predicted", drawn as the model saw them:
    light on black, black at 0 and white at the brightest value an input can have (255, or 1.0 for floats).

    images: (N, 28, 28), (N, 784) or (N, 1, 28, 28); true, predicted: (N,) class indices.
    """
    return _save(misclassified_figure(images, true, predicted, class_names, limit), path)


def misclassified_figure(images, true, predicted, class_names: list[str], limit: int = 36):
    """The figure of plot_misclassified."""
    images = _host(images)
    true = _host(true).astype(numpy.int64).ravel()
    predicted = _host(predicted).astype(numpy.int64).ravel()
    every_wrong = numpy.flatnonzero(true != predicted)
    wrong = every_wrong[:limit]
    if len(wrong) == 0:
        figure = _new_figure(4, 2)
        figure.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        return figure
    pictures = images[wrong].reshape(len(wrong), 28, 28)
    rows, columns = _grid(len(wrong))
    figure = _new_figure(1.6 * columns + 0.5, 1.8 * rows + 0.6)
    brightest = 255 if images.dtype == numpy.uint8 else 1.0
    shown = f"the first {len(wrong)} of {len(every_wrong):,}" if len(wrong) < len(every_wrong) else f"all {len(wrong)}"
    figure.suptitle(f"test images the model got wrong ({shown}), as it saw them: true -> predicted")
    for index, axes in enumerate(numpy.atleast_1d(figure.subplots(rows, columns)).ravel()):
        axes.set_axis_off()
        if index < len(wrong):
            k = wrong[index]
            axes.imshow(pictures[index], cmap="gray", vmin=0, vmax=brightest, interpolation="nearest")
            axes.set_title(f"{class_names[true[k]]} -> {class_names[predicted[k]]}", fontsize=7)
    return figure


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
