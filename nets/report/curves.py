"""The training curves of a run, from its metrics JSON: train and test loss, train and test accuracy, and the
learning rate, all against the epoch.

    figure = training_curves_figure(metrics)        # three panels, titled with the model, dataset and result
    steps = learning_rate_per_step(metrics)         # (epochs, rates) of the schedule step by step, or None

Every panel draws what the metrics hold: a run whose epochs carry no "test_loss" gets its train loss alone; the
learning rate step by step when the metrics say enough to recompute it (schedule, peak lr, batch size, and the
images of an epoch from its speed and seconds) and the recomputed rate at each epoch's end equals the recorded
"lr_end", else the recorded rate at each epoch's end.
"""

from __future__ import annotations

import math

import numpy

from nets.optim.schedules import SCHEDULES, learning_rate
from nets.report.figures import PlotError, new_figure, save, whole_epoch_ticks

__all__ = ["learning_rate_per_step", "plot_training_curves", "training_curves_figure"]

MAX_POINTS = 2000  # the learning-rate curve's points: a batch-1 run has hundreds of thousands of steps
MAX_PLANNED = 1000  # epochs beyond the last recorded one that a run in progress may have been planned for
MAX_IMAGES = 10**9  # an epoch of more images than this is no record of a run: no schedule is recomputed from it


def plot_training_curves(metrics: dict, path):
    """The figure of training_curves_figure, written to `path` as a PNG."""
    return save(training_curves_figure(metrics), path)


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


def _epoch_numbers(epochs: list) -> list:
    return [entry.get("epoch", index + 1) for index, entry in enumerate(epochs)]


def _series(epochs: list, key: str):
    """The values of `key` per epoch (nan where missing), or None when no epoch has it."""
    values = [entry.get(key) for entry in epochs]
    return None if all(value is None for value in values) else [numpy.nan if v is None else v for v in values]


def _images_per_epoch(epochs: list) -> int | None:
    """The training images of a whole epoch, from its speed and seconds (both written from the same count)."""
    for entry in epochs:
        if "partial_epoch_images" not in entry and entry.get("seconds", 0) > 0 and "images_per_second" in entry:
            images = entry["images_per_second"] * entry["seconds"]
            return round(images) if 1 <= images <= MAX_IMAGES else None
    return None


def _planned_epochs(schedule: str, peak: float, steps: int, epochs: list) -> int | None:
    """The number of epochs the schedule was planned for: the first, from the last recorded epoch on, whose rate at
    each recorded epoch's end is the recorded lr_end; None when none is (another batch size on resume, say)."""
    ends = [(entry["epoch"], entry["lr_end"]) for entry in epochs if "epoch" in entry and "lr_end" in entry]
    last = max((entry.get("epoch", 0) for entry in epochs), default=0)
    if not ends or last < 1:
        return None
    for planned in range(last, last + MAX_PLANNED + 1):
        if all(math.isclose(learning_rate(schedule, peak, epoch * steps - 1, planned * steps), recorded,
                            rel_tol=1e-6, abs_tol=1e-15) for epoch, recorded in ends):
            return planned
        if schedule == "constant":
            return None  # the same rate whatever the plan: one try says it all
    return None


def learning_rate_per_step(metrics: dict):
    """(epochs, rates): the learning rate of every step (at most MAX_POINTS of them, evenly spread), the x axis in
    epochs (step s of S per epoch ends at (s + 1) / S); None when the metrics do not say enough (module docstring)."""
    schedule, peak, batch = metrics.get("schedule"), metrics.get("lr"), metrics.get("batch_size")
    epochs = metrics.get("epochs") or []
    images = _images_per_epoch(epochs)
    if schedule not in SCHEDULES or not isinstance(peak, (int, float)) or not isinstance(batch, int) or batch < 1 \
            or not images:
        return None
    steps = -(-images // batch)
    planned = _planned_epochs(schedule, peak, steps, epochs)
    if planned is None:
        return None
    total = planned * steps
    chosen = numpy.unique(numpy.linspace(0, total - 1, min(total, MAX_POINTS)).round().astype(numpy.int64))
    rates = [learning_rate(schedule, peak, int(step), total) for step in chosen]
    return (chosen + 1) / steps, numpy.asarray(rates)


def _draw_loss(axes, numbers, epochs) -> None:
    drawn = []
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        values = _series(epochs, key)
        if values is not None:
            axes.plot(numbers, values, marker="o", label=label)
            drawn.append(label)
    title = "train and test loss" if len(drawn) == 2 else ("test loss" if drawn == ["test"] else "training loss")
    axes.set(xlabel="epoch", ylabel="cross-entropy loss", title=title)


def _draw_accuracy(axes, numbers, epochs) -> None:
    for key, label in (("train_accuracy", "train"), ("test_accuracy", "test")):
        values = _series(epochs, key)
        if values is not None:
            axes.plot(numbers, 100 * numpy.asarray(values, dtype=numpy.float64), marker="o", label=label)
    axes.set(xlabel="epoch", ylabel="accuracy (%)", title="train and test accuracy")


def _draw_learning_rate(axes, metrics, numbers, epochs) -> None:
    per_step = learning_rate_per_step(metrics)
    ends = _series(epochs, "lr_end")
    if per_step is not None:
        axes.plot(*per_step, label="each step")
        title = f"learning rate ({metrics['schedule']}, peak {metrics['lr']:g})"
    else:
        title = "learning rate at each epoch's end"
    if ends is not None:
        axes.plot(numbers, ends, "o", label="epoch's end")
    if per_step is None and ends is None:
        axes.text(0.5, 0.5, "the metrics hold no learning rate", ha="center", va="center", transform=axes.transAxes)
        title = "learning rate"
    axes.set(xlabel="epoch", ylabel="learning rate", title=title)
    axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))


def training_curves_figure(metrics: dict):
    """The figure of plot_training_curves: loss, accuracy (in percent) and learning rate per epoch, on whole-epoch
    ticks, with the model, dataset and final test accuracy in the title."""
    epochs = metrics.get("epochs") or []
    if not epochs:
        raise PlotError("the metrics have no epochs to plot; train for at least one epoch first.")
    numbers = _epoch_numbers(epochs)
    figure = new_figure(14, 4)
    loss_axes, accuracy_axes, rate_axes = figure.subplots(1, 3)
    _draw_loss(loss_axes, numbers, epochs)
    _draw_accuracy(accuracy_axes, numbers, epochs)
    _draw_learning_rate(rate_axes, metrics, numbers, epochs)
    last = max(numbers)
    for axes in (loss_axes, accuracy_axes, rate_axes):
        axes.grid(alpha=0.3)
        whole_epoch_ticks(axes, 0 if axes is rate_axes else min(numbers), last)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    title = _curves_title(metrics, epochs)
    if title:
        figure.suptitle(title)
    return figure
