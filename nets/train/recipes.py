"""Training recipes: the hyperparameters a run starts from, per model. Explicit CLI options override them.

- "notebook" reproduces the course notebook: the MLP with plain SGD lr 0.01 on single samples, the CNN with Adam
  lr 0.01 on batches of 32, 5 epochs each, He init.
- "default" is this project's recipe: Adam under a one-cycle schedule (peak lr 3e-3) on batches of 128 for 20
  epochs, with the augmentation that suits the dataset and model ("auto", nets/data/augment.py: shifts of up to 2
  pixels on digits; for the CNN on clothes, left-right flips and shifts of up to 1 pixel; see README for the
  runs behind it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from nets.data.augment import Augmentation
from nets.data.augment import resolve as resolve_augmentation

RECIPE_NAMES = ("default", "notebook")


@dataclass(frozen=True)
class Hyperparameters:
    """Everything that decides how a model is trained (not where)."""

    optimizer: str
    lr: float
    batch_size: int
    epochs: int
    schedule: str = "constant"
    momentum: float = 0.0
    weight_decay: float = 0.0
    init: str = "he"
    augment: str = "none"  # "flip", "shift:N", "flip+shift:N" (nets/data/augment.py); "auto": see augmentation_for

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    "notebook": {
        "mlp": Hyperparameters(optimizer="sgd", lr=0.01, batch_size=1, epochs=5),
        "cnn": Hyperparameters(optimizer="adam", lr=0.01, batch_size=32, epochs=5),
    },
    "default": {
        "mlp": Hyperparameters(optimizer="adam", lr=3e-3, batch_size=128, epochs=20, schedule="onecycle",
                               augment="auto"),
        "cnn": Hyperparameters(optimizer="adam", lr=3e-3, batch_size=128, epochs=20, schedule="onecycle",
                               augment="auto"),
    },
}


def augmentation_for(augment: str, dataset: str, model: str) -> str:
    """Resolve "auto" for `dataset` and `model` (nets.data.augment.AUTO); anything else in its canonical spelling."""
    return resolve_augmentation(augment, dataset, model)


def check_augment(augment) -> str:
    """`augment` when it names an augmentation ("auto" included); AugmentError (a ValueError) otherwise."""
    if augment != "auto":
        Augmentation.parse(augment)
    return augment


def resolve_hyperparameters(recipe: str, model: str, **overrides) -> Hyperparameters:
    """The recipe's hyperparameters for `model`, with every override that is not None applied."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPE_NAMES)}")
    if model not in RECIPES[recipe]:
        raise ValueError(f"unknown model {model!r}; choose mlp or cnn")
    given = {name: value for name, value in overrides.items() if value is not None}
    return replace(RECIPES[recipe][model], **given)


def recipe_defaults(name: str) -> str:
    """What each recipe sets a hyperparameter to, for --help: "default recipe: 20; notebook: 5", or, where the
    models differ, "default recipe: 128; notebook: mlp 1, cnn 32"."""
    parts = []
    for recipe in RECIPE_NAMES:
        models = RECIPES[recipe]
        values = {model: getattr(hyper, name) for model, hyper in models.items()}
        shown = ({f"{value:g}" if isinstance(value, float) else str(value) for value in values.values()})
        text = shown.pop() if len(shown) == 1 else ", ".join(
            f"{model} {f'{value:g}' if isinstance(value, float) else value}" for model, value in values.items())
        parts.append(f"{'default recipe' if recipe == 'default' else recipe}: {text}")
    return "; ".join(parts)
