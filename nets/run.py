"""A training run end to end: options -> data -> engine -> fit -> checkpoints, metrics and plots.

scripts/train.py parses the command line into `RunOptions` and calls `train_run`; everything a test needs
to reach lives here. User mistakes raise `RunError` (one line); the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy

import backend as backend_lib

from . import checkpoint as checkpoints
from . import datasets
from .checkpoint_core import atomic_write
from .engines import NetsEngine
from .models import build_model
from .optim import build_optimizer
from .recipes import Hyperparameters, augmentation_for, resolve_hyperparameters
from .training import DivergedError, TrainingInterrupted, TrainingState, fit, predict_classes

DEFAULT_DATASET = "mnist"
FALLBACK_DATASET = "fashion-mnist"
IMPLS = ("nets", "torch")
DTYPES = ("float32", "float64")
MODEL_IMAGE_SHAPE = (28, 28)
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class RunError(RuntimeError):
    """A problem with the user's options or files, said in one line."""


@dataclass
class RunOptions:
    """The command line as given; None means "not given" (the recipe or the resumed checkpoint decides)."""

    model: str | None = None
    impl: str | None = None
    device: str = "cpu"
    dataset: str | None = None
    data_dir: str | None = None
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    init: str | None = None
    augment: str | None = None
    seed: int | None = None
    dtype: str | None = None
    save: str | None = None
    resume: str | None = None
    metrics_json: str | None = None
    plot: str | None = None
    quiet: bool = False
    download: bool = True
    stop_after_steps: int | None = None  # testing hook: behave as if Ctrl-C came after this many steps


@dataclass
class RunSettings:
    """The resolved settings of a run: what a checkpoint stores under its config, and the metrics echo."""

    model: str
    impl: str
    dataset: str
    recipe: str
    seed: int
    dtype: str
    hyper: Hyperparameters
    device: str = "cpu"
    data_dir: str | None = None

    def as_dict(self) -> dict:
        values = asdict(self)
        values["hyper"] = self.hyper.as_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RunSettings":
        values = dict(values)
        values["hyper"] = Hyperparameters(**values["hyper"])
        return cls(**values)


@dataclass
class RunResult:
    """What a finished run reports: the metrics dict (also written as JSON) and where files went."""

    metrics: dict
    checkpoint_path: str | None = None
    plot_paths: list = field(default_factory=list)


def resolve_settings(options: RunOptions, resumed: dict | None) -> RunSettings:
    """Explicit options beat the resumed checkpoint's settings, which beat the recipe's."""
    previous = RunSettings.from_dict(resumed) if resumed else None
    model = options.model or (previous.model if previous else "cnn")
    if previous and options.model and options.model != previous.model:
        raise RunError(f"the checkpoint {options.resume} holds a {previous.model}, but --model {options.model} was asked for.")
    recipe = options.recipe or (previous.recipe if previous else "default")
    # RunOptions names every hyperparameter as Hyperparameters does; None means "not given"
    overrides = {name: getattr(options, name) for name in Hyperparameters.__dataclass_fields__}
    if previous and recipe == previous.recipe:
        hyper = replace(previous.hyper, **{name: value for name, value in overrides.items() if value is not None})
    else:
        hyper = resolve_hyperparameters(recipe, model, **overrides)
    if hyper.optimizer == "adam" and options.momentum is not None:
        raise RunError("--momentum applies to --optimizer sgd only (Adam's betas are fixed at 0.9, 0.999).")
    return RunSettings(
        model=model,
        impl=options.impl or (previous.impl if previous else "nets"),
        dataset=options.dataset or (previous.dataset if previous else DEFAULT_DATASET),
        recipe=recipe,
        seed=options.seed if options.seed is not None else (previous.seed if previous else 0),
        dtype=options.dtype or (previous.dtype if previous else "float32"),
        hyper=hyper,
        device=options.device,
        data_dir=options.data_dir or (previous.data_dir if previous else None),
    )


def choose_dataset(options: RunOptions, settings: RunSettings, say) -> datasets.Dataset:
    """Load the dataset; with no --dataset given, fall back from MNIST to Fashion-MNIST and say so first."""
    explicit = options.dataset is not None or options.data_dir is not None or options.resume is not None
    try:
        return datasets.load_dataset(settings.dataset, settings.data_dir, download=options.download)
    except datasets.DataNotFoundError as missing:
        if explicit or settings.dataset != DEFAULT_DATASET:
            raise RunError(str(missing)) from None
        try:
            fallback = datasets.load_dataset(FALLBACK_DATASET, None, download=options.download)
        except datasets.DataError:
            raise RunError(str(missing)) from None
        say(f"MNIST is not available here (not found, and it could not be downloaded): training on "
            f"Fashion-MNIST instead, from {fallback.source}. Use --data-dir DIR to point at MNIST files.")
        settings.dataset = FALLBACK_DATASET
        return fallback
    except datasets.DataError as error:
        raise RunError(str(error)) from None


def build_engine(settings: RunSettings, backend):
    """The engine for `settings`, initialised from `backend.rng` (the same initial weights for both impls)."""
    model = build_model(settings.model, backend=backend, dtype=settings.dtype, init=settings.hyper.init, rng=backend.rng)
    hyper = settings.hyper
    if settings.impl == "nets":
        optimizer = build_optimizer(hyper.optimizer, model.parameters(), lr=hyper.lr,
                                    momentum=hyper.momentum, weight_decay=hyper.weight_decay)
        return NetsEngine(model, optimizer, backend)
    from .torch_baseline import build_torch_model, require_torch
    from .torch_engine import TorchEngine

    try:
        require_torch(backend.name)
    except backend_lib.BackendError as error:
        raise RunError(f"--impl torch: {error}") from None
    torch_model = build_torch_model(model.config())
    engine = TorchEngine(torch_model, hyper, backend.name, settings.dtype, model.config())
    engine.load_state(model.state_dict(), None)  # the nets initialisation, so both impls start alike
    return engine


def library_versions(backend) -> dict:
    """python, numpy, cupy (on the GPU) and torch (when installed) versions, for the metrics JSON."""
    versions = {"python": platform.python_version(), **backend.library_versions()}
    try:
        import torch
    except ImportError:
        return versions
    versions["torch"] = torch.__version__
    return versions


def _write_json_atomically(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: file.write((json.dumps(payload, indent=2) + "\n").encode()))


def train_run(options: RunOptions, say=print, progress=None) -> RunResult:
    """Run the training the options describe. Raises RunError for user mistakes; see the module doc."""
    resumed = None
    if options.resume:
        try:
            resumed = checkpoints.load_checkpoint(options.resume)
        except checkpoints.CheckpointError as error:
            raise RunError(str(error)) from None
        if not resumed.config or "hyper" not in resumed.config:
            raise RunError(f"{options.resume} holds weights but no training state; it can be evaluated, not resumed.")
    try:
        settings = resolve_settings(options, resumed.config if resumed else None)
    except (ValueError, TypeError) as error:  # TypeError: a resumed config with unknown or missing settings
        raise RunError(f"cannot use these settings{f' from {options.resume}' if resumed else ''}: {error}") from None
    try:
        backend = backend_lib.get_backend(settings.device, seed=settings.seed)
    except backend_lib.BackendError as error:
        raise RunError(str(error)) from None
    if options.plot:  # say so now, not after the training
        from .plots import PlotError, require_matplotlib

        try:
            require_matplotlib()
        except PlotError as error:
            raise RunError(f"--plot needs matplotlib: {error}") from None

    data = choose_dataset(options, settings, say)
    if data.image_shape != MODEL_IMAGE_SHAPE:
        raise RunError(f"{data.source} holds {data.image_shape[0]}x{data.image_shape[1]} images; the models take "
                       f"{MODEL_IMAGE_SHAPE[0]}x{MODEL_IMAGE_SHAPE[1]} (MNIST's format).")
    settings.hyper = replace(settings.hyper, augment=augmentation_for(settings.hyper.augment, data.name))
    engine = build_engine(settings, backend)
    layout = "nchw" if settings.model == "cnn" else "flat"
    device_data = DeviceData.move(engine, data, layout, settings.dtype)

    state = TrainingState()
    if resumed:
        try:
            engine.load_state(resumed.params, resumed.optimizer_state)
        except ValueError as error:
            raise RunError(f"cannot resume from {options.resume}: {error}") from None
        state = TrainingState(epoch=resumed.epoch, step_in_epoch=resumed.step_in_epoch,
                              epoch_rng_state=resumed.epoch_rng_state, history=list(resumed.metrics or []))
        try:
            checkpoints.restore_rng(resumed, backend.rng)
        except checkpoints.CheckpointError as error:
            raise RunError(f"cannot resume from {options.resume}: {error}") from None
        if state.epoch >= settings.hyper.epochs:
            raise RunError(f"{options.resume} already finished {state.epoch} epochs; pass --epochs above {state.epoch} to train on.")

    hyper = settings.hyper
    flips = ", left-right flips" if hyper.augment == "flip" else ""
    resuming = ""
    if resumed:
        resuming = f"; resuming at epoch {state.epoch + 1}" + (f", step {state.step_in_epoch + 1}" if state.step_in_epoch else "")
    say(f"Training {settings.model} ({settings.impl}) on {backend.name}, {settings.dtype}: "
        f"{hyper.optimizer} lr {hyper.lr:g} ({hyper.schedule}), batch {hyper.batch_size}, {hyper.epochs} epochs{flips}, "
        f"recipe {settings.recipe}; {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images"
        f"{resuming}")

    interrupt_path = options.save or str(Path("checkpoints") / f"{settings.model}-{settings.impl}-interrupted.npz")
    versions = library_versions(backend)
    started = time.perf_counter()

    def metrics_now(final_state: TrainingState) -> dict:
        history = final_state.history
        return {
            "model": settings.model, "impl": settings.impl, "device": backend.name, "dataset": data.name,
            "data_source": data.source, "recipe": settings.recipe, "dtype": settings.dtype, "seed": settings.seed,
            **hyper.as_dict(),
            "test_accuracy": history[-1]["test_accuracy"] if history else None,
            "epochs": history,
            "train_seconds": sum(record["seconds"] for record in history),
            "wall_seconds": time.perf_counter() - started,
            "versions": versions,
        }

    def save(path: str, current: TrainingState) -> None:
        checkpoints.save_checkpoint(
            path, engine.parameters_numpy(), model_config=engine.model_config, optimizer_state=engine.optimizer_state(),
            epoch=current.epoch, step_in_epoch=current.step_in_epoch, rng=backend.rng,
            epoch_rng_state=current.epoch_rng_state, config=settings.as_dict(), metrics=current.history)

    def on_epoch_end(current: TrainingState) -> None:
        if options.save:
            save(options.save, current)
        if options.metrics_json:
            _write_json_atomically(options.metrics_json, metrics_now(current))

    try:
        # Overflow shows up as a NaN/inf loss, which fit() reports in one line; numpy's warnings would only add noise.
        with numpy.errstate(over="ignore", invalid="ignore"):
            state = fit(engine, device_data, hyper, backend.rng, state=state, on_epoch_end=on_epoch_end,
                        progress=None if options.quiet else progress, log=None if options.quiet else say,
                        stop_after_steps=options.stop_after_steps)
    except TrainingInterrupted as stop:
        save(interrupt_path, stop.state)
        raise Interrupted(
            f"interrupted after epoch {stop.state.epoch} step {stop.state.step_in_epoch}: checkpoint written to "
            f"{interrupt_path}; continue with --resume {interrupt_path}") from None
    except DivergedError as error:
        kept = f" The last good checkpoint is {options.save}." if options.save and Path(options.save).exists() else ""
        raise Diverged(f"{error}{kept}") from None

    metrics = metrics_now(state)
    if options.metrics_json:
        _write_json_atomically(options.metrics_json, metrics)
    result = RunResult(metrics=metrics, checkpoint_path=options.save)
    if options.plot:
        result.plot_paths = write_plots(options.plot, metrics, engine, settings, device_data, data)
    return result


class Interrupted(RunError):
    """Ctrl-C: a checkpoint of the last completed step was written (the message says where)."""


class Diverged(RunError):
    """The loss became NaN or infinite; nothing was saved after the last good epoch."""


@dataclass
class DeviceData:
    """The dataset as float inputs in [0, 1] and integer labels, moved to the engine's device once."""

    train_images: object
    train_labels: object
    test_images: object
    test_labels: object
    image_width: int  # the images may be flat rows (the MLP's input): this says how wide one image is

    @classmethod
    def move(cls, engine, data: datasets.Dataset, layout: str, dtype: str) -> "DeviceData":
        def images(raw):
            return engine.to_device(datasets.to_float(raw, dtype=dtype, layout=layout))

        def labels(raw):
            return engine.to_device(datasets.to_labels(raw))

        return cls(images(data.train_images), labels(data.train_labels), images(data.test_images), labels(data.test_labels),
                   image_width=data.image_shape[1])


def write_plots(directory, metrics, engine, settings, device_data, data) -> list:
    """The PNGs of --plot: curves, confusion matrix, first-layer filters, misclassified test images."""
    from . import plots

    predicted = predict_classes(engine, device_data.test_images)
    return plots.write_all_plots(directory, metrics, engine.parameters_numpy(), data.test_images, data.test_labels,
                                 predicted, list(data.class_names))
