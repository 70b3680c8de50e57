"""Test accuracy, per-class accuracy and the confusion matrix of a trained model, and their text rendering.

    result = evaluate(model, dataset.test_images, dataset.test_labels)   # a nets Model, or any predictor
    result.accuracy                      # float in [0, 1]
    result.per_class_accuracy            # (10,) float; nan for a class with no test images
    result.confusion_matrix              # (10, 10) int64, rows true class, columns predicted
    print(format_report(result, class_names_for("fashion-mnist")))

The forward passes run in batches on the predictor's device (nets/nn/inference.py: a nets Model, or the
PyTorch engine for evaluate.py --impl torch).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy

from nets.errors import NetsError

from nets.nn.architecture import a_model, output_count
from nets.nn.inference import BATCH_SIZE, predict_classes
from nets.data.datasets import CLASS_NAMES, TITLES  # the one list of class names, re-exported here
from nets.data.datasets import Dataset, load_dataset, named_by_content, require_examples

__all__ = [
    "CLASS_NAMES",
    "Evaluation",
    "EvaluationError",
    "ClassNamesError",
    "check_classes",
    "class_names_for",
    "confusion_matrix",
    "dataset_name_of",
    "evaluate",
    "format_confusion_matrix",
    "format_per_class_accuracy",
    "format_report",
    "model_classes",
    "per_class_accuracy",
    "test_set_for",
    "top_classes",
]

NUM_CLASSES = 10


class EvaluationError(NetsError, ValueError):
    """The images or labels do not fit the model (shape, classes, none at all); the message says what to do."""


def class_names_for(dataset_name: str | None) -> list[str]:
    """The ten class names of a dataset ("mnist", "fashion-mnist"); the digits 0-9 for anything else."""
    return list(CLASS_NAMES.get(dataset_name or "mnist", CLASS_NAMES["mnist"]))


@dataclass
class Evaluation:
    """What `evaluate` measured.

    predictions: (N,) int64 predicted classes, on the host.
    confusion_matrix: (K, K) int64, [true, predicted].
    per_class_accuracy: (K,) float64, recall of each class (nan where a class has no images).
    """

    accuracy: float
    per_class_accuracy: numpy.ndarray
    confusion_matrix: numpy.ndarray
    predictions: numpy.ndarray

    def to_dict(self, class_names: list[str] | None = None) -> dict:
        """Plain JSON-ready data: accuracy, per-class accuracy by name, the matrix as nested lists."""
        names = class_names or [str(k) for k in range(len(self.per_class_accuracy))]
        return {
            "accuracy": self.accuracy,
            "per_class_accuracy": {
                name: (None if numpy.isnan(value) else float(value))
                for name, value in zip(names, self.per_class_accuracy)
            },
            "confusion_matrix": self.confusion_matrix.tolist(),
            "class_names": list(names),
            "num_images": int(self.confusion_matrix.sum()),
        }


def confusion_matrix(true_labels, predicted_labels, num_classes: int = NUM_CLASSES) -> numpy.ndarray:
    """Counts of (true, predicted) pairs: two (N,) integer arrays -> (K, K) int64, rows true class."""
    true_labels = numpy.asarray(true_labels).astype(numpy.int64).ravel()
    predicted_labels = numpy.asarray(predicted_labels).astype(numpy.int64).ravel()
    if true_labels.shape != predicted_labels.shape:
        raise ValueError(
            f"{true_labels.size} labels but {predicted_labels.size} predictions; they must be the same length."
        )
    for labels in (true_labels, predicted_labels):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise EvaluationError(f"class labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}; "
                                  f"the model and the data must have {num_classes} classes.")
    flat = true_labels * num_classes + predicted_labels
    return numpy.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(matrix) -> numpy.ndarray:
    """Fraction of each true class predicted correctly: (K, K) -> (K,) float64, nan for an empty class."""
    matrix = numpy.asarray(matrix)
    totals = matrix.sum(axis=1)
    with numpy.errstate(invalid="ignore", divide="ignore"):
        return numpy.where(totals > 0, numpy.diag(matrix) / numpy.maximum(totals, 1), numpy.nan)


def evaluate(predictor, images, labels, batch_size: int = BATCH_SIZE) -> Evaluation:
    """Accuracy, per-class accuracy and confusion matrix of `predictor` on (images, labels).

    images: (N, 28, 28) uint8 as in the dataset (or any layout nets.data.datasets.to_model_input takes); labels: (N,).
    """
    labels = numpy.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels; they must match.")
    if len(labels) == 0:
        raise EvaluationError("there are no images to evaluate on (the test set is empty); use a complete test set.")
    predictions = predict_classes(predictor, images, batch_size)
    matrix = confusion_matrix(labels, predictions)
    accuracy = float(numpy.trace(matrix) / matrix.sum()) if matrix.sum() else float("nan")
    return Evaluation(accuracy, per_class_accuracy(matrix), matrix, predictions)


def format_confusion_matrix(matrix, class_names: list[str] | None = None) -> str:
    """The confusion matrix as a text table: one row per true class, one column per predicted class.

    Columns are headed by class index so the table stays narrow; rows also give the name ("9 Ankle boot")
    when a class is not simply named by its index.
    """
    matrix = numpy.asarray(matrix)
    count = matrix.shape[0]
    names = list(class_names) if class_names else [str(k) for k in range(count)]
    labels = [name if name == str(k) else f"{k} {name}" for k, name in enumerate(names)]
    corner = "true \\ predicted"
    label_width = max(len(corner), *(len(label) for label in labels))
    cell_width = max(len(str(count - 1)), len(str(int(matrix.max()))) if matrix.size else 1)
    rows = [corner.ljust(label_width) + "".join(f" {k:>{cell_width}}" for k in range(count))]
    for label, row in zip(labels, matrix):
        rows.append(label.ljust(label_width) + "".join(f" {int(value):>{cell_width}}" for value in row))
    return "\n".join(rows)


def format_per_class_accuracy(accuracies, class_names: list[str] | None = None, matrix=None) -> str:
    """One line per class: name, accuracy in percent, and (given the matrix) correct/total."""
    names = list(class_names) if class_names else [str(k) for k in range(len(accuracies))]
    width = max(len(name) for name in names)
    lines = []
    for k, (name, value) in enumerate(zip(names, accuracies)):
        text = "   n/a " if numpy.isnan(value) else f"{100 * value:6.2f}%"
        if matrix is not None:
            text += f"  ({int(matrix[k, k])}/{int(matrix[k].sum())})"
        lines.append(f"{name.ljust(width)}  {text}")
    return "\n".join(lines)


def format_report(result: Evaluation, class_names: list[str] | None = None) -> str:
    """Test accuracy, per-class accuracy and the confusion matrix, ready to print."""
    total = int(result.confusion_matrix.sum())
    correct = int(numpy.trace(result.confusion_matrix))
    return "\n".join([
        f"test accuracy: {100 * result.accuracy:.2f}% ({correct}/{total})",
        "",
        "per-class accuracy:",
        format_per_class_accuracy(result.per_class_accuracy, class_names, result.confusion_matrix),
        "",
        "confusion matrix (rows: true class, columns: predicted):",
        format_confusion_matrix(result.confusion_matrix, class_names),
    ])


def top_classes(probabilities, k: int) -> list[list[tuple[int, float]]]:
    """The k most probable classes of each row: (N, K) probabilities -> N lists of (class, probability)."""
    probabilities = numpy.asarray(probabilities)
    order = numpy.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[(int(c), float(row[c])) for c in classes] for row, classes in zip(probabilities, order)]


def dataset_name_of(checkpoint, default: str = "mnist") -> str:
    """The dataset a checkpoint was trained on (meta/dataset, or an older file's config), else `default`."""
    name = getattr(checkpoint, "dataset", None) or (getattr(checkpoint, "config", None) or {}).get("dataset")
    return name if isinstance(name, str) and name in CLASS_NAMES else default


def check_classes(checkpoint, path, class_names, dataset_title: str) -> None:
    """EvaluationError, one line, when the checkpoint's model has not one output per class of the dataset."""
    outputs, classes = output_count(checkpoint.model_config), len(class_names)
    if outputs != classes:
        raise EvaluationError(f"{path} holds {a_model(checkpoint.model_name)} with {outputs} outputs, but "
                              f"{dataset_title} has {classes} classes; use a model with one output per class, trained "
                              f"on {dataset_title}.")


def test_set_for(checkpoint, path, dataset: str | None, data_dir, download: bool, purpose: str
                 ) -> tuple[Dataset, str | None]:
    """The test set to score a checkpoint on: --dataset, else the checkpoint's own, else mnist; named by its files
    when they are the other published dataset (-> the line that says so, else None). One-line errors for files that
    contradict --dataset, an empty test set, and a model without one output per class. The dataset returned holds
    no training images (its train_images and train_labels are empty)."""
    data = load_dataset(dataset or dataset_name_of(checkpoint), data_dir, download=download)
    data, note = named_by_content(data, f"--dataset {dataset}" if dataset else None)
    require_examples(data, ("test",), purpose)
    check_classes(checkpoint, path, data.class_names, data.title)
    # Scoring needs the test split alone: the training images (47 MB of Fashion-MNIST) are let go here.
    data = replace(data, train_images=data.train_images[:0].copy(), train_labels=data.train_labels[:0].copy())
    return data, note


class ClassNamesError(EvaluationError):
    """--dataset would rename the classes a checkpoint's model was trained on, or cannot name its outputs."""


def model_classes(checkpoint, path, asked: str | None = None) -> tuple[list[str], str]:
    """The names of a checkpoint's outputs, and a line saying which dataset the model knows.

    asked: a --dataset the user gave. It names the classes of a checkpoint that does not say its dataset; for
    one that does, another dataset is refused (ClassNamesError): the outputs are that dataset's classes, and
    naming them after another dataset's would relabel them silently."""
    known = getattr(checkpoint, "dataset", None) or (dataset_name_of(checkpoint, "") or None)
    article = a_model(getattr(checkpoint, "model_name", "model"))
    if known is not None:
        if asked is not None and asked != known:
            raise ClassNamesError(
                f"{path} holds {article} trained on {TITLES[known]}; its outputs are {TITLES[known]}'s classes, so "
                f"--dataset {asked} would give them {TITLES[asked]}'s names. Leave out --dataset.")
        names = list(getattr(checkpoint, "class_names", None) or CLASS_NAMES[known])
        return names, f"model: {article} trained on {TITLES[known]} (classes: {_listing(known, names)})"
    outputs = output_count(checkpoint.model_config)
    if asked is not None:
        names = class_names_for(asked)
        if len(names) != outputs:
            raise ClassNamesError(f"{path} holds {article} with {outputs} outputs, but {TITLES[asked]} has "
                                  f"{len(names)} classes, so --dataset {asked} cannot name them; leave out --dataset.")
        return names, (f"model: {article}; {path} does not say which dataset it was trained on, so its classes are "
                       f"named as --dataset {asked} says: {_listing(asked, names)}")
    return [str(index) for index in range(outputs)], (
        f"model: {article}; {path} does not say which dataset it was trained on, so its classes are shown by "
        f"number, 0-{outputs - 1}" + (" (--dataset NAME names them)" if outputs == len(CLASS_NAMES["mnist"]) else ""))


def _listing(dataset: str, names) -> str:
    return "the digits 0-9" if dataset == "mnist" else ", ".join(names)

