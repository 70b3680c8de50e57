"""A training run's settings, written once: the options (RunOptions declares each command-line option;
scripts/train.py makes its click options from these fields), the recipes they start from, and the rule that
merges them into the frozen RunSettings of a run: explicit > the resumed checkpoint's > the recipe's.

    options = RunOptions(model="mlp", epochs=3)          # None: not given (the recipe or --resume decides)
    settings = resolve_settings(options, resumed)         # resumed: the checkpoint's RunSettings, or None

Each field's metadata says how the command line offers it: help, choices or a kind ("int>=1", "float>0", ...; the
same check, nets.validate, reads a checkpoint's settings back), and whether it is a hyperparameter
(`hyperparameter`: its value overrides the recipe's Hyperparameters field of that name; a test holds the two lists
equal).

The recipes, per model:
- "notebook" reproduces the course notebook: the MLP with plain SGD lr 0.01 on single samples, the CNN with Adam
  lr 0.01 on batches of 32, 5 epochs each, He init.
- "default" is this project's recipe: Adam under a one-cycle schedule (peak lr 3e-3) on batches of 128 for 20
  epochs, with the augmentation that suits the dataset and model ("auto", nets/data/augment.py: shifts of up to 2
  pixels on digits; for the CNN on clothes, left-right flips and shifts of up to 1 pixel).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import backend as backend_lib
from nets.errors import NetsError

from nets.data import datasets
from nets.data.augment import Augmentation
from nets.nn.architecture import MODEL_NAMES, a_model
from nets.nn.layers.base import INITS
from nets.optim import OPTIMIZERS
from nets.optim.schedules import SCHEDULES
from nets.train.graph import GRAPH_MODES, eager_because
from nets.validate import KINDS, by_kind, choice

__all__ = ["DEFAULT_DATASET", "DTYPES", "FALLBACK_DATASET", "Hyperparameters", "IMPLS", "LAYER_SETS", "RECIPES",
           "RECIPE_NAMES", "RunError", "RunOptions", "RunSettings", "STORED_HYPERPARAMETERS_KEY",
           "hyperparameter_overrides", "recipe_defaults", "resolve_hyperparameters", "resolve_settings"]

RECIPE_NAMES = ("default", "notebook")
DEFAULT_DATASET = "mnist"
FALLBACK_DATASET = "fashion-mnist"
IMPLS = ("nets", "torch")
# --layers: the fast layers of nets/nn/layers, or the plain ones of nets/nn/reference
LAYER_SETS = ("fast", "reference")
DTYPES = ("float32", "float64")
# The key of the hyperparameters in a checkpoint's meta/config (RunSettings.as_dict and from_dict), and in the
# messages about them ("hyper.lr must be ..."): every checkpoint stores them under this short name.
STORED_HYPERPARAMETERS_KEY = "hyper"


class RunError(NetsError, RuntimeError):
    """A problem with the user's options or files, said in one line."""


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
    augment: str = "none"  # "flip", "shift:N", "flip+shift:N"; "auto": nets/data/augment.py's AUTO, per dataset

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
        values = {model: getattr(hyperparameters, name) for model, hyperparameters in models.items()}
        shown = ({f"{value:g}" if isinstance(value, float) else str(value) for value in values.values()})
        text = shown.pop() if len(shown) == 1 else ", ".join(
            f"{model} {f'{value:g}' if isinstance(value, float) else value}" for model, value in values.items())
        parts.append(f"{'default recipe' if recipe == 'default' else recipe}: {text}")
    return "; ".join(parts)


def option(help: str, *, choices=None, kind: str | None = None, hyperparameter: bool = False,
           show_default: bool = False, hidden: bool = False) -> dict:
    """A field's command-line option. kind: "int>=1", "int>=0", "float>0", "float>=0", "float[0,1)", "file",
    "folder", "flag", "augment" or "device" (its choices, and the hidden backend.HIDDEN_DEVICES)
    (scripts/train.py maps each to a click type)."""
    return {"help": help, "choices": choices, "kind": kind, "hyperparameter": hyperparameter,
            "show_default": show_default, "hidden": hidden}


def _recipe(name: str) -> str:
    return f" [{recipe_defaults(name)}]"


@dataclass(frozen=True)
class RunOptions:
    """The command line as given; None means "not given" (the recipe or the resumed checkpoint decides)."""

    model: str | None = field(default=None, metadata=option("Architecture (default cnn).", choices=MODEL_NAMES))
    impl: str | None = field(default=None, metadata=option(
        "Hand-written nets (default) or the PyTorch baseline, through the same loop.", choices=IMPLS))
    layers: str | None = field(default=None, metadata=option(
        "The nets' layers: fast (default), or reference: the plain layers of nets/nn/reference, one tensor at a "
        "time, every step eager, to read and step through (same results to float rounding, far slower).",
        choices=LAYER_SETS))
    device: str = field(default="cpu", metadata=option("auto picks the GPU when CuPy and CUDA work.",
                                                       choices=backend_lib.DEVICES, kind="device", show_default=True))
    graph: str = field(default="auto", metadata=option(
        "Capture the nets' training step as a CUDA graph after one eager step, and replay it (one host call per "
        "step): auto does so for --impl nets on a GPU.", choices=GRAPH_MODES, show_default=True))
    dataset: str | None = field(default=None, metadata=option(
        "Default mnist; falls back to fashion-mnist when MNIST is absent.", choices=datasets.DATASET_NAMES))
    data_dir: str | None = field(default=None, metadata=option("Folder holding the four IDX files.", kind="folder"))
    epochs: int | None = field(default=None, metadata=option(
        "Passes over the training set." + _recipe("epochs"), kind="int>=1", hyperparameter=True))
    batch_size: int | None = field(default=None, metadata=option(
        "Images per training step." + _recipe("batch_size"), kind="int>=1", hyperparameter=True))
    optimizer: str | None = field(default=None, metadata=option(
        _recipe("optimizer").strip(), choices=OPTIMIZERS, hyperparameter=True))
    lr: float | None = field(default=None, metadata=option(
        "Learning rate (the peak, under a one-cycle schedule)." + _recipe("lr"), kind="float>0", hyperparameter=True))
    momentum: float | None = field(default=None, metadata=option(
        "SGD momentum." + _recipe("momentum"), kind="float[0,1)", hyperparameter=True))
    weight_decay: float | None = field(default=None, metadata=option(
        "L2 weight decay." + _recipe("weight_decay"), kind="float>=0", hyperparameter=True))
    schedule: str | None = field(default=None, metadata=option(
        "Learning-rate schedule: constant, or torch's OneCycleLR shape." + _recipe("schedule"), choices=SCHEDULES,
        hyperparameter=True))
    init: str | None = field(default=None, metadata=option(
        "Weight initialisation." + _recipe("init"), choices=INITS, hyperparameter=True))
    augment: str | None = field(default=None, metadata=option(
        "Each epoch, flip: mirror a random half of the training images left-right; shift:N: move each image by up "
        "to N pixels (default 2) in x and y; flip+shift:N: both. auto (the default recipe's): shift:2 on mnist; "
        "flip+shift:1 for the cnn on fashion-mnist, none for the mlp there." + _recipe("augment"), kind="augment",
        hyperparameter=True))
    seed: int | None = field(default=None, metadata=option(
        "Seeds initialisation and shuffling (default 0).", kind="int>=0"))
    dtype: str | None = field(default=None, metadata=option("Default float32.", choices=DTYPES))
    recipe: str | None = field(default=None, metadata=option(
        "default: this project's; notebook: the course notebook's. Explicit options override it.  [default: default]",
        choices=RECIPE_NAMES))
    save: str | None = field(default=None, metadata=option(
        "Checkpoint (.npz) written atomically after every epoch [default: runs/DATASET-MODEL-IMPL.npz, numbered "
        "-2, -3, ... when that is taken; with --resume, back into that checkpoint].", kind="file"))
    no_save: bool = field(default=False, metadata=option(
        "Write no checkpoint after each epoch (Ctrl-C still saves one).", kind="flag"))
    resume: str | None = field(default=None, metadata=option("Continue exactly from a checkpoint.", kind="file"))
    metrics_json: str | None = field(default=None, metadata=option(
        "Per-epoch metrics as JSON [default: beside the checkpoint, same name, .json].", kind="file"))
    plot: str | None = field(default=None, metadata=option("Write PNG plots here.", kind="folder"))
    quiet: bool = field(default=False, metadata=option("Only the final accuracy.", kind="flag"))
    no_download: bool = field(default=False, metadata=option("Never download datasets.", kind="flag"))
    # testing hook: behave as if Ctrl-C came after this many steps
    stop_after_steps: int | None = field(default=None, metadata=option("", kind="int>=1", hidden=True))


def hyperparameter_overrides(options: RunOptions) -> dict:
    """The hyperparameters the options give, by name ({} when none is given)."""
    return {f.name: getattr(options, f.name) for f in fields(options)
            if f.metadata["hyperparameter"] and getattr(options, f.name) is not None}


@dataclass(frozen=True)
class RunSettings:
    """The resolved settings of a run: what a checkpoint stores under its config, and the metrics echo."""

    model: str
    impl: str
    dataset: str
    recipe: str
    seed: int
    dtype: str
    hyperparameters: Hyperparameters
    device: str = "cpu"
    data_dir: str | None = None
    graph: str = "auto"
    layers: str = "fast"
    plot: str | None = None  # --plot and --metrics-json: a resume keeps them
    metrics_json: str | None = None

    def as_dict(self) -> dict:
        """The settings as plain data (a checkpoint's meta/config); the hyperparameters go under the key that every
        checkpoint stores them under, "hyper" (STORED_HYPERPARAMETERS_KEY)."""
        return {(STORED_HYPERPARAMETERS_KEY if name == "hyperparameters" else name): value
                for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "RunSettings":
        """Settings from as_dict() output (a checkpoint's meta/config); ValueError or TypeError naming the first
        setting that is missing, unknown or outside what a run can use."""
        values = dict(values)
        if "strategy" in values and "layers" not in values:  # the name this setting had in earlier checkpoints
            values["layers"] = values.pop("strategy")
        stored = values.pop(STORED_HYPERPARAMETERS_KEY, None)  # the hyperparameters' key on disk (as_dict)
        if not isinstance(stored, dict):
            raise ValueError(f"{STORED_HYPERPARAMETERS_KEY} is {stored!r}, not a set of hyperparameters")
        values["hyperparameters"] = Hyperparameters(**stored)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """ValueError naming the first setting a run cannot use (a checkpoint's config may have been edited): each
        checked as its command-line option is (RunOptions' metadata: choices or kind, through nets.validate)."""
        choices = {"device": backend_lib.DEVICES + backend_lib.HIDDEN_DEVICES}  # the hidden ones too
        names = {spec.name for spec in fields(self)} | {spec.name for spec in fields(self.hyperparameters)}
        for spec in fields(RunOptions):
            if spec.name not in names:
                continue
            hyperparameter = spec.metadata["hyperparameter"]
            value = getattr(self.hyperparameters if hyperparameter else self, spec.name)
            name = f"{STORED_HYPERPARAMETERS_KEY}.{spec.name}" if hyperparameter else spec.name  # as in meta/config
            allowed, kind = choices.get(spec.name, spec.metadata["choices"]), spec.metadata["kind"]
            if allowed is not None:
                choice(value, name, allowed)
            elif kind in KINDS:
                by_kind(kind, value, name)
            elif kind == "augment" and value != "auto":
                try:
                    Augmentation.parse(value)
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from None
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir is {self.data_dir!r}, not a folder name")


def resolve_settings(options: RunOptions, previous: RunSettings | None) -> RunSettings:
    """Explicit options beat the resumed checkpoint's settings (previous: RunSettings.from_dict of its meta/config),
    which beat the recipe's. RunError, one line, for settings a run cannot use."""
    try:
        return _resolve(options, previous)
    except ValueError as error:
        raise RunError(f"cannot use these settings{f' from {options.resume} (meta/config)' if previous else ''}: "
                       f"{error}") from None


def _resolve(options: RunOptions, previous: RunSettings | None) -> RunSettings:
    model = options.model or (previous.model if previous else "cnn")
    if previous and options.model and options.model != previous.model:
        raise RunError(f"the checkpoint {options.resume} holds {a_model(previous.model)}, but "
                       f"--model {options.model} was asked for.")
    recipe = options.recipe or (previous.recipe if previous else "default")
    overrides = hyperparameter_overrides(options)
    if previous and recipe == previous.recipe:
        hyperparameters = replace(previous.hyperparameters, **overrides)
    else:
        hyperparameters = resolve_hyperparameters(recipe, model, **overrides)
    if hyperparameters.optimizer == "adam" and options.momentum is not None:
        raise RunError("--momentum applies to --optimizer sgd only (Adam's betas are fixed at 0.9, 0.999).")
    impl = options.impl or (previous.impl if previous else "nets")
    layers = options.layers or (previous.layers if previous and impl == "nets" else "fast")
    if layers == "reference" and impl == "torch":
        raise RunError("--layers reference trains the nets' reference layers; --impl torch trains PyTorch's own. "
                       "Use --impl nets with it.")
    try:  # what can be told before the device is known (eager_because decides once more with it)
        eager_because(options.graph, gpu=True, impl=impl, layers=layers)
    except ValueError as error:
        raise RunError(str(error)) from None
    settings = RunSettings(
        model=model,
        impl=impl,
        dataset=options.dataset or (previous.dataset if previous else DEFAULT_DATASET),
        recipe=recipe,
        seed=options.seed if options.seed is not None else (previous.seed if previous else 0),
        dtype=options.dtype or (previous.dtype if previous else "float32"),
        hyperparameters=hyperparameters,
        device=options.device,
        data_dir=options.data_dir or (previous.data_dir if previous else None),
        graph=options.graph,
        layers=layers,
        plot=options.plot or (previous.plot if previous else None),
        metrics_json=options.metrics_json or (previous.metrics_json if previous else None),
    )
    settings.check()
    return settings
