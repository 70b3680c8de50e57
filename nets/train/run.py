"""A training run end to end: options -> data -> engine -> fit -> checkpoints, metrics and plots.

scripts/train.py parses the command line into `RunOptions` and calls `train_run`; everything a test needs
to reach lives here. User mistakes raise `RunError` or another NetsError (one line), before the first training
step wherever they can be known then; the CLI prints the line and exits non-zero.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy

import backend as backend_lib
from backend.errors import NetsError

from nets import checkpoint as checkpoints
from nets.data import datasets
from nets import outputs
from nets.train.engine import NetsEngine
from nets.nn.layers.base import INITS
from nets.nn.architecture import a_model
from nets.nn.models import MODEL_NAMES, build_model
from nets.optim import OPTIMIZERS, build_optimizer
from nets.data.augment import Augmentation
from nets.train.recipes import RECIPE_NAMES, Hyperparameters, augmentation_for, check_augment, recipe_name, resolve_hyperparameters
from nets.optim.schedules import SCHEDULES, learning_rate
from nets.train.loop import DivergedError, TrainingInterrupted, TrainingState, fit, predict_classes

DEFAULT_DATASET = "mnist"
FALLBACK_DATASET = "fashion-mnist"
IMPLS = ("nets", "torch")
DTYPES = ("float32", "float64")
MODEL_IMAGE_SHAPE = (28, 28)
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class RunError(NetsError, RuntimeError):
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
    save: str | None = None  # None: the default path (DEFAULT_RUNS_DIR), or back into --resume's checkpoint
    no_save: bool = False  # --no-save: no checkpoint after each epoch (Ctrl-C still writes one)
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
        """Settings from as_dict() output (a checkpoint's meta/config); ValueError or TypeError naming the first
        setting that is missing, unknown or outside what a run can use."""
        values = dict(values)
        if not isinstance(values.get("hyper"), dict):
            raise ValueError(f"hyper is {values.get('hyper')!r}, not a set of hyperparameters")
        values["hyper"] = Hyperparameters(**values["hyper"])
        values["recipe"] = recipe_name(values.get("recipe"))  # "seed", the notebook recipe's first name
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """ValueError naming the first setting a run cannot use (a checkpoint's config may have been edited)."""
        choices = {"model": MODEL_NAMES, "impl": IMPLS, "dataset": datasets.DATASET_NAMES, "recipe": RECIPE_NAMES,
                   "dtype": DTYPES, "device": backend_lib.DEVICES, "hyper.optimizer": OPTIMIZERS,
                   "hyper.schedule": SCHEDULES, "hyper.init": INITS}
        for name, allowed in choices.items():
            value = getattr(self.hyper, name[len("hyper."):]) if name.startswith("hyper.") else getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} is {value!r}; it must be one of {', '.join(allowed)}")
        try:
            check_augment(self.hyper.augment)
        except ValueError as error:
            raise ValueError(f"hyper.augment: {error}") from None
        _check_whole("seed", self.seed, 0)
        _check_whole("hyper.epochs", self.hyper.epochs, 1)
        _check_whole("hyper.batch_size", self.hyper.batch_size, 1)
        _check_real("hyper.lr", self.hyper.lr, "a positive finite number", lambda value: value > 0)
        _check_real("hyper.momentum", self.hyper.momentum, "in [0, 1)", lambda value: 0 <= value < 1)
        _check_real("hyper.weight_decay", self.hyper.weight_decay, "a finite number >= 0", lambda value: value >= 0)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir is {self.data_dir!r}, not a folder name")


def _check_whole(name, value, least) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} is {value!r}; it must be a whole number >= {least}")


def _check_real(name, value, what, fits) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not fits(value):
        raise ValueError(f"{name} is {value!r}; it must be {what}")


@dataclass
class RunResult:
    """What a finished run reports: the metrics dict (also written as JSON) and where files went."""

    metrics: dict
    checkpoint_path: str | None = None
    metrics_path: str | None = None
    plot_paths: list = field(default_factory=list)
    resumed_from: str | None = None  # the checkpoint this run resumed from (written back when it is checkpoint_path)


def resolve_settings(options: RunOptions, resumed: dict | None) -> RunSettings:
    """Explicit options beat the resumed checkpoint's settings, which beat the recipe's."""
    previous = RunSettings.from_dict(resumed) if resumed else None
    model = options.model or (previous.model if previous else "cnn")
    if previous and options.model and options.model != previous.model:
        raise RunError(f"the checkpoint {options.resume} holds {a_model(previous.model)}, but "
                       f"--model {options.model} was asked for.")
    recipe = recipe_name(options.recipe) or (previous.recipe if previous else "default")
    # RunOptions names every hyperparameter as Hyperparameters does; None means "not given"
    overrides = {name: getattr(options, name) for name in Hyperparameters.__dataclass_fields__}
    if previous and recipe == previous.recipe:
        hyper = replace(previous.hyper, **{name: value for name, value in overrides.items() if value is not None})
    else:
        hyper = resolve_hyperparameters(recipe, model, **overrides)
    if hyper.optimizer == "adam" and options.momentum is not None:
        raise RunError("--momentum applies to --optimizer sgd only (Adam's betas are fixed at 0.9, 0.999).")
    settings = RunSettings(
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
    settings.check()
    return settings


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


def select_backend(settings: RunSettings):
    """(backend, device) of a run: the nets compute on the backend of --device; --impl torch initialises its
    model on the host (NumPy, the nets' initialisation) and computes on torch's device, so a GPU run of the
    baseline needs a CUDA build of torch, not CuPy."""
    if settings.impl != "torch":
        backend = backend_lib.get_backend(settings.device, seed=settings.seed)
        return backend, backend.name
    from nets.baseline.models import require_torch

    try:
        torch = require_torch("cpu" if settings.device == "auto" else settings.device)
    except backend_lib.BackendError as error:
        raise RunError(f"--impl torch: {error}") from None
    device = settings.device
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    return backend_lib.get_backend("cpu", seed=settings.seed), device


def build_engine(settings: RunSettings, backend, device: str):
    """The engine for `settings` on `device`, initialised from `backend.rng` (the same initial weights for both
    impls)."""
    model = build_model(settings.model, backend=backend, dtype=settings.dtype, init=settings.hyper.init, rng=backend.rng)
    hyper = settings.hyper
    if settings.impl == "nets":
        optimizer = build_optimizer(hyper.optimizer, model.parameters(), lr=hyper.lr,
                                    momentum=hyper.momentum, weight_decay=hyper.weight_decay)
        return NetsEngine(model, optimizer, backend)
    from nets.baseline.models import build_torch_model
    from nets.baseline.engine import TorchEngine

    torch_model = build_torch_model(model.config())
    engine = TorchEngine(torch_model, hyper, device, settings.dtype, model.config())
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


DEFAULT_RUNS_DIR = Path("runs")
INTERRUPT_DIR = Path("checkpoints")


@dataclass
class OutputPaths:
    """Where a run writes. checkpoint: after every epoch (None with --no-save); metrics: the metrics JSON, beside
    the checkpoint unless --metrics-json says otherwise (None when neither); interrupt: where Ctrl-C saves.
    labels name each path's origin in messages ("--save", "--resume", "the checkpoint", ...)."""

    checkpoint: str | None
    checkpoint_label: str | None
    metrics: str | None
    metrics_label: str | None
    interrupt: str
    default: bool  # the checkpoint path is the default one, named after the dataset (which may fall back)


def default_checkpoint_path(settings: RunSettings) -> str:
    """runs/<dataset>-<model>-<impl>.npz, relative to the current directory."""
    return str(DEFAULT_RUNS_DIR / f"{settings.dataset}-{settings.model}-{settings.impl}.npz")


def metrics_path_beside(checkpoint: str) -> str:
    """The metrics JSON that goes with a checkpoint: runs/cnn.npz -> runs/cnn.json."""
    path = Path(checkpoint)
    beside = path.with_suffix(".json") if path.suffix != ".json" else path.with_name(path.stem + ".metrics.json")
    return str(beside)


def output_paths(options: RunOptions, settings: RunSettings) -> OutputPaths:
    """--save, else back into --resume's checkpoint, else the default path; none with --no-save."""
    default = False
    if options.save:
        checkpoint, label = options.save, "--save"
    elif options.no_save:
        checkpoint, label = None, None
    elif options.resume:
        checkpoint, label = options.resume, "--resume"
    else:
        checkpoint, label, default = default_checkpoint_path(settings), "the checkpoint", True
    if options.metrics_json:
        metrics, metrics_label = options.metrics_json, "--metrics-json"
    elif checkpoint:
        metrics, metrics_label = metrics_path_beside(checkpoint), "the metrics"
    else:
        metrics, metrics_label = None, None
    if checkpoint and metrics and os.path.abspath(checkpoint) == os.path.abspath(metrics):
        raise RunError(f"--metrics-json {metrics} is the checkpoint's own path; give the metrics another file.")
    interrupt = checkpoint or str(INTERRUPT_DIR / f"{settings.model}-{settings.impl}-interrupted.npz")
    return OutputPaths(checkpoint, label, metrics, metrics_label, interrupt, default)


def _advice(label: str | None) -> str:
    if label == "--resume":
        return "pass --save PATH to write the resumed run elsewhere"
    if label in ("the checkpoint", "the metrics"):
        return "pass --save PATH (and --metrics-json PATH) to put them elsewhere, or --no-save"
    if label is None:
        return "pass --save PATH to put it elsewhere"
    return "choose another path"


def check_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Before anything is loaded: every output path can be written (creating nothing yet); OutputError if not."""
    if paths.checkpoint:
        outputs.check_file_creatable(paths.checkpoint, paths.checkpoint_label, _advice(paths.checkpoint_label))
    else:
        outputs.check_file_creatable(paths.interrupt, "the Ctrl-C checkpoint", _advice(None))
    if paths.metrics:
        outputs.check_file_creatable(paths.metrics, paths.metrics_label, _advice(paths.metrics_label))
    if options.plot:
        outputs.check_folder_creatable(options.plot, "--plot")


def prepare_outputs(options: RunOptions, paths: OutputPaths) -> None:
    """Right before training: create the folders of the outputs (the Ctrl-C folder only when it is needed)."""
    if paths.checkpoint:
        outputs.prepare_file(paths.checkpoint, paths.checkpoint_label)
    if paths.metrics:
        outputs.prepare_file(paths.metrics, paths.metrics_label)
    if options.plot:
        outputs.prepare_folder(options.plot, "--plot")


def saving_plan(paths: OutputPaths, resumed: bool) -> str:
    """The line that says, before training, where the run will write."""
    if paths.checkpoint is None:
        metrics = f"; metrics to {paths.metrics}" if paths.metrics else ""
        return (f"Saving no checkpoint (--no-save){metrics}; Ctrl-C still saves one to {paths.interrupt}.")
    where = ("back to the checkpoint it resumed from, " if paths.checkpoint_label == "--resume" and resumed else "")
    replacing = " (replacing the one there)" if paths.default and os.path.exists(paths.checkpoint) else ""
    return (f"Saving a checkpoint after every epoch {where}to {paths.checkpoint}{replacing}, "
            f"metrics to {paths.metrics}.")


def load_resumed(path) -> checkpoints.Checkpoint:
    """The checkpoint --resume names, with the training state a resume needs; RunError, one line, otherwise."""
    try:
        if os.path.isfile(path) and checkpoints.is_torch_file(path):
            raise RunError(f"{path} is a PyTorch state_dict: it holds weights but no optimizer state, epoch or RNG "
                           f"state, so training cannot resume from it; score it with scripts/evaluate.py {path}.")
        resumed = checkpoints.load_checkpoint(path)
    except checkpoints.CheckpointError as error:
        raise RunError(str(error)) from None
    if not resumed.config or "hyper" not in resumed.config:
        raise RunError(f"{path} holds weights but no training state; it can be evaluated, not resumed.")
    try:
        checkpoints.restore_rng(resumed, numpy.random.default_rng())  # the real one is set once the run is built
    except checkpoints.CheckpointError as error:
        raise RunError(f"cannot resume from {path}: {error}") from None
    history = resumed.metrics if resumed.metrics is not None else []
    if not isinstance(history, list) or not all(
            isinstance(record, dict) and all(_is_number(record.get(key)) for key in ("seconds", "test_accuracy"))
            for record in history):
        raise RunError(f"{path} has a meta/metrics entry that is not the per-epoch list train.py writes; "
                       "it cannot be resumed.")
    return resumed


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_resume_position(resumed, settings: RunSettings, train_count: int, options: RunOptions, say) -> None:
    """The resumed epoch and step fit this run, and extending a one-cycle schedule is never silent (see README)."""
    path, hyper = options.resume, settings.hyper
    steps_per_epoch = math.ceil(train_count / hyper.batch_size)
    if resumed.step_in_epoch >= steps_per_epoch:
        raise RunError(f"{path} has meta/step_in_epoch {resumed.step_in_epoch}, but an epoch here has only "
                       f"{steps_per_epoch} steps (batch {hyper.batch_size}); resume with the data and --batch-size "
                       "it was trained with.")
    if resumed.epoch >= hyper.epochs:
        raise RunError(f"{path} already finished {resumed.epoch} epochs; pass --epochs above {resumed.epoch} to train on.")
    planned = RunSettings.from_dict(resumed.config).hyper
    if planned.schedule != "onecycle" or hyper.schedule != "onecycle":
        return
    if (planned.epochs, planned.batch_size) == (hyper.epochs, hyper.batch_size):
        return  # the same plan of steps: the cycle continues exactly (a new --lr is an explicit change)
    # What the first run did at its last step, and what the re-planned cycle does at the next one.
    planned_steps = math.ceil(train_count / planned.batch_size)
    done = resumed.epoch * planned_steps + resumed.step_in_epoch
    then = learning_rate("onecycle", planned.lr, min(max(done - 1, 0), planned_steps * planned.epochs - 1),
                         planned_steps * planned.epochs)
    now = learning_rate("onecycle", hyper.lr, resumed.epoch * steps_per_epoch + resumed.step_in_epoch,
                        steps_per_epoch * hyper.epochs)
    change = (f"{path} was trained under a one-cycle schedule planned for {_epochs(planned.epochs)} (batch "
              f"{planned.batch_size}, peak lr {planned.lr:g}); this run re-plans it for {_epochs(hyper.epochs)} (batch "
              f"{hyper.batch_size}, peak lr {hyper.lr:g}), so the learning rate goes from {then:.3g} at its last step "
              f"to {now:.3g}")
    if options.schedule is None:
        raise RunError(f"{change}, which is not what {hyper.epochs} epochs in one go would do. Train afresh with "
                       f"--epochs {hyper.epochs} for that; add --schedule constant --lr F to train on at a fixed rate; "
                       "or add --schedule onecycle to re-plan the cycle anyway.")
    say(f"note: {change} (--schedule onecycle); only a resume with the planned --epochs continues exactly.")


def _epochs(count: int) -> str:
    return f"{count} epoch" if count == 1 else f"{count} epochs"


def interrupted_where(state: TrainingState) -> str:
    """"after 10 full epochs and 73 steps of epoch 11", for the Ctrl-C message."""
    full = f"{_epochs(state.epoch).replace('epoch', 'full epoch')}"
    if not state.step_in_epoch:
        return f"after {full}"
    steps = f"{state.step_in_epoch} step{'s' if state.step_in_epoch != 1 else ''} of epoch {state.epoch + 1}"
    return f"after {full} and {steps}" if state.epoch else f"after {steps}"


def train_run(options: RunOptions, say=print, progress=None) -> RunResult:
    """Run the training the options describe. Raises RunError (and other NetsErrors) for user mistakes, all
    before the first training step where they can be known then; see the module doc."""
    resumed = load_resumed(options.resume) if options.resume else None
    try:
        settings = resolve_settings(options, resumed.config if resumed else None)
    except (ValueError, TypeError) as error:  # TypeError: a resumed config with unknown or missing settings
        raise RunError(f"cannot use these settings{f' from {options.resume} (meta/config)' if resumed else ''}: "
                       f"{error}") from None
    paths = output_paths(options, settings)
    check_outputs(options, paths)
    try:
        backend, device = select_backend(settings)
    except backend_lib.BackendError as error:
        raise RunError(str(error)) from None
    if options.plot:  # say so now, not after the training
        from nets.report.plots import PlotError, require_matplotlib

        try:
            require_matplotlib()
        except PlotError as error:
            raise RunError(f"--plot needs matplotlib: {error}") from None

    planned_dataset = settings.dataset
    data = choose_dataset(options, settings, say)
    if paths.default and planned_dataset != data.name:  # the fallback dataset names the default path
        paths = output_paths(options, settings)
        check_outputs(options, paths)
    if data.image_shape != MODEL_IMAGE_SHAPE:
        raise RunError(f"{data.source} holds {data.image_shape[0]}x{data.image_shape[1]} images; the models take "
                       f"{MODEL_IMAGE_SHAPE[0]}x{MODEL_IMAGE_SHAPE[1]} (MNIST's format).")
    datasets.require_examples(data, ("train", "test"), "training")
    settings.hyper = replace(settings.hyper, augment=augmentation_for(settings.hyper.augment, data.name,
                                                                               settings.model))
    if resumed:
        check_resume_position(resumed, settings, len(data.train_labels), options, say)
    engine = build_engine(settings, backend, device)
    layout = "nchw" if settings.model == "cnn" else "flat"
    device_data = DeviceData.move(engine, data, layout, settings.dtype)

    state = TrainingState()
    if resumed:
        load_resumed_state(engine, resumed, options.resume, settings)
        state = TrainingState(epoch=resumed.epoch, step_in_epoch=resumed.step_in_epoch,
                              epoch_rng_state=resumed.epoch_rng_state, history=list(resumed.metrics or []))
        try:
            checkpoints.restore_rng(resumed, backend.rng)
        except checkpoints.CheckpointError as error:
            raise RunError(f"cannot resume from {options.resume}: {error}") from None

    hyper = settings.hyper
    moves = Augmentation.parse(hyper.augment).describe()
    moves = f", {moves}" if moves else ""
    resuming = ""
    if resumed:
        resuming = f"; resuming at epoch {state.epoch + 1}" + (f", step {state.step_in_epoch + 1}" if state.step_in_epoch else "")
    say(f"Training {settings.model} ({settings.impl}) on {device}, {settings.dtype}: "
        f"{hyper.optimizer} lr {hyper.lr:g} ({hyper.schedule}), batch {hyper.batch_size}, {_epochs(hyper.epochs)}{moves}, "
        f"recipe {settings.recipe}; {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images"
        f"{resuming}")

    say(saving_plan(paths, resumed is not None))
    prepare_outputs(options, paths)
    versions = library_versions(backend)
    started = time.perf_counter()

    def metrics_now(final_state: TrainingState) -> dict:
        history = final_state.history
        return {
            "model": settings.model, "impl": settings.impl, "device": device, "dataset": data.name,
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
            path, engine.parameters_numpy(), engine.model_config, optimizer_state=engine.optimizer_state(),
            epoch=current.epoch, step_in_epoch=current.step_in_epoch, rng_state=backend.rng.bit_generator.state,
            epoch_rng_state=current.epoch_rng_state, config=settings.as_dict(), metrics=current.history,
            dataset=data.name)

    def on_epoch_end(current: TrainingState) -> None:
        if paths.checkpoint:
            save(paths.checkpoint, current)
        if paths.metrics:
            outputs.write_json(paths.metrics, metrics_now(current), paths.metrics_label)

    try:
        # Overflow shows up as a NaN/inf loss, which fit() reports in one line; numpy's warnings would only add noise.
        with numpy.errstate(over="ignore", invalid="ignore"):
            state = fit(engine, device_data, hyper, backend.rng, state=state, on_epoch_end=on_epoch_end,
                        progress=None if options.quiet else progress, log=None if options.quiet else say,
                        stop_after_steps=options.stop_after_steps)
    except TrainingInterrupted as stop:
        where = interrupted_where(stop.state)
        try:
            outputs.prepare_file(paths.interrupt, paths.checkpoint_label if paths.checkpoint else "the Ctrl-C checkpoint")
            save(paths.interrupt, stop.state)
        except NetsError as error:
            raise RunError(f"interrupted {where}, but no checkpoint could be written: {error}") from None
        raise Interrupted(
            f"interrupted {where}: checkpoint written to {paths.interrupt}; continue with --resume {paths.interrupt}"
        ) from None
    except DivergedError as error:
        kept = (f" The last good checkpoint is {paths.checkpoint}."
                if paths.checkpoint and Path(paths.checkpoint).exists() else "")
        raise Diverged(f"{error}{kept}") from None

    metrics = metrics_now(state)
    if paths.metrics:
        outputs.write_json(paths.metrics, metrics, paths.metrics_label)
    result = RunResult(metrics=metrics, checkpoint_path=paths.checkpoint, metrics_path=paths.metrics,
                       resumed_from=options.resume)
    if options.plot:
        result.plot_paths = write_plots(options.plot, metrics, engine, settings, device_data, data)
    return result


def load_resumed_state(engine, resumed, path, settings: RunSettings) -> None:
    """Put the checkpoint's weights and optimizer state into the engine; RunError when they do not fit it."""
    expected = {name: tuple(array.shape) for name, array in engine.parameters_numpy().items()}
    given = {name: tuple(array.shape) for name, array in resumed.params.items()}
    if given != expected:
        differ = next((f"{name} is {given.get(name)} there but {shape} here" for name, shape in expected.items()
                       if given.get(name) != shape), "its parameter names differ")
        raise RunError(f"cannot resume from {path}: its {resumed.model_name} is not the {settings.model} train.py "
                       f"builds ({differ}); train.py resumes only its own models.")
    try:
        engine.load_state(resumed.params, resumed.optimizer_state)
    except ValueError as error:
        raise RunError(f"cannot resume from {path}: {error}") from None


class Interrupted(RunError):
    """Ctrl-C: a checkpoint of the last completed step was written (the message says where)."""

    exit_code = EXIT_INTERRUPTED


class Diverged(RunError):
    """The loss became NaN or infinite; nothing was saved after the last good epoch."""

    exit_code = EXIT_DIVERGED


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
    from nets.report import plots

    predicted = predict_classes(engine, device_data.test_images)
    return plots.write_all_plots(directory, metrics, engine.parameters_numpy(), data.test_images, data.test_labels,
                                 predicted, list(data.class_names))
