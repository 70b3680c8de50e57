"""A training run end to end: options -> settings -> engine -> data -> fit -> checkpoints, metrics and plots.

scripts/train.py parses the command line into RunOptions (nets/train/settings.py) and calls `train_run` with the
engines it offers by impl name (the PyTorch one comes from nets/baseline/, which this wing never imports):

    result = train_run(options, {"nets": nets_engine_for_run, "torch": torch_engine_for_run})

User mistakes raise RunError or another NetsError (one line), before the first training step wherever they can
be known then; the CLI prints the line and exits non-zero. Ctrl-C ends in Interrupted (exit 130) after a
checkpoint of the last completed step is written (nets/train/record.py); a NaN loss in Diverged (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy

import backend as backend_lib
from backend import AUTO_CPU

from nets.commands import script_command
from nets.data import datasets
from nets.data.augment import Augmentation
from nets.data.augment import resolve as resolve_augmentation
from nets.devices import log_why_cpu, open_backend
from nets.errors import DeviceError
from nets.nn.inference import predict_classes
from nets.nn.models import build_model
from nets.nn.reference.models import build_reference_model
from nets.train.graph import eager_because
from nets.train.interrupt import InterruptFlag, Interrupted, interrupted_by
from nets.train.loop import DeviceData, Diverged, TrainingState, epochs_text, fit
from nets.train.paths import check_against_data, check_outputs, output_paths, prepare_outputs, saving_plan
from nets.train.record import RunRecord
from nets.train.resume import Resume, settled
from nets.train.settings import DEFAULT_DATASET, FALLBACK_DATASET, RunError, RunOptions, RunSettings, resolve_settings

__all__ = ["Resume", "RunResult", "train_run"]

MODEL_IMAGE_SHAPE = (28, 28)
TORCH_NO_CUDA = "PyTorch here has no CUDA device (a CPU build of torch, or no NVIDIA GPU)."


@dataclass
class RunResult:
    """What a finished run reports: the metrics dict (also written as JSON) and where files went."""

    metrics: dict
    checkpoint_path: str | None = None
    metrics_path: str | None = None
    plot_paths: list = field(default_factory=list)
    resumed_from: str | None = None  # the checkpoint this run resumed from (written back when it is checkpoint_path)
    data_dir: str | None = None  # the --data-dir the data came from (the next steps need it too)


def train_run(options: RunOptions, engines: dict, log=print, progress=None) -> RunResult:
    """Run the training the options describe, with engines[impl](settings, initial nets model) as the engine.
    Raises RunError (and other NetsErrors) for user mistakes, all before the first training step where they can
    be known then; see the module doc."""
    resumed = Resume.load(options.resume) if options.resume else None
    settings = resolve_settings(options, resumed.settings if resumed else None)
    settings = settled(options, settings, resumed, log)  # an absolute --data-dir; what a resume changes, said
    paths = output_paths(options, settings)
    check_outputs(options, paths)
    engine, backend = build_engine(settings, engines)
    if settings.device == "auto" and engine.backend.name == "cpu":  # a word only where a GPU is here but unusable
        if settings.impl == "nets":
            log_why_cpu(backend, log)
        elif backend_lib.nvidia_driver_loaded():
            log(AUTO_CPU + TORCH_NO_CUDA)
    if settings.plot:  # say so now, not after the training
        require_plots()
    data, settings, paths = load_data(options, settings, paths, log)
    if resumed:
        resumed.check_data(data, log)
        resumed.check_position(settings, len(data.train_labels), options, log)
    device_data = DeviceData.move(engine.backend, data, engine.input_shape, settings.dtype)
    state = resumed.load_into(engine, backend.rng, settings) if resumed else TrainingState()
    device = "standin" if settings.device == "standin" else engine.backend.name
    try:
        eager = eager_because(settings.graph, gpu=device != "cpu", impl=settings.impl, layers=settings.layers)
    except ValueError as error:
        raise RunError(str(error)) from None
    log(describe(settings, data, device, state if resumed else None))
    if device != "cpu" and eager is not None:
        log(f"training step runs eager ({eager})")
    log(saving_plan(paths, resumed is not None))
    prepare_outputs(options, paths)
    record = RunRecord(settings, paths, engine, backend, data, device, resumed_from=options.resume,
                       resumed_state=state, log=log)
    state, metrics, stop_asked = train_and_save(record, device_data, state, options, progress, log)
    result = RunResult(metrics=metrics, checkpoint_path=paths.checkpoint, metrics_path=paths.metrics,
                       resumed_from=options.resume, data_dir=settings.data_dir)
    if settings.plot:
        result.plot_paths = draw_plots(engine, device_data, data, result, settings.plot, state, stop_asked)
    return result


def build_engine(settings: RunSettings, engines: dict):
    """The engine of settings.impl, its model initialised from the nets' initialisation (the same initial weights
    for both impls), drawn from the run's RNG. The nets compute on the backend of --device; the torch engine's
    model is initialised on the host and computes on torch's device (a GPU run of it needs no CuPy)."""
    backend = open_backend(settings.device if settings.impl == "nets" else "cpu", seed=settings.seed)
    build = build_reference_model if settings.layers == "reference" else build_model
    model = build(settings.model, backend=backend, dtype=settings.dtype, init=settings.hyperparameters.init,
                  rng=backend.rng)
    try:
        return engines[settings.impl](settings, model), backend
    except DeviceError as error:
        raise RunError(f"--impl {settings.impl}: {error}") from None


def require_plots() -> None:
    """RunError, one line, when --plot cannot draw here (no matplotlib)."""
    from nets.report.plots import PlotError, require_matplotlib

    try:
        require_matplotlib()
    except PlotError as error:
        raise RunError(f"--plot needs matplotlib: {error}") from None


def load_data(options: RunOptions, settings: RunSettings, paths, log):
    """The dataset (falling back from MNIST to Fashion-MNIST when MNIST is absent), checked for training, and the
    settings and output paths that follow from it (its name, its augmentation) -> (data, settings, paths)."""
    data, settings = choose_dataset(options, settings, log)
    if paths.default and paths != output_paths(options, settings):  # the fallback dataset names the default path
        paths = output_paths(options, settings)
        check_outputs(options, paths)
    check_against_data(paths, data)
    if data.image_shape != MODEL_IMAGE_SHAPE:
        raise RunError(f"{data.source} holds {data.image_shape[0]}x{data.image_shape[1]} images; the models take "
                       f"{MODEL_IMAGE_SHAPE[0]}x{MODEL_IMAGE_SHAPE[1]} (MNIST's format).")
    datasets.require_examples(data, ("train", "test"), "training")
    augment = resolve_augmentation(settings.hyperparameters.augment, data.name, settings.model)
    batch_size = fit_batch_size(settings.hyperparameters.batch_size, len(data.train_labels), log)
    hyperparameters = replace(settings.hyperparameters, augment=augment, batch_size=batch_size)
    return data, replace(settings, hyperparameters=hyperparameters), paths


def fit_batch_size(batch_size: int, images: int, log) -> int:
    """min(batch size, training images): a batch size over the images is one batch of the whole set, and every
    buffer a step keeps is sized by it, so --batch-size 10**12 costs what a batch of the whole set does."""
    if batch_size <= images:
        return batch_size
    log(f"batch size {batch_size} is more than the {images} training images: each step takes all {images}.")
    return images


def choose_dataset(options: RunOptions, settings: RunSettings, log) -> tuple[datasets.Dataset, RunSettings]:
    """The dataset and the settings that name it: with no --dataset given, fall back from MNIST to Fashion-MNIST
    and say so first."""
    explicit = options.dataset is not None or options.data_dir is not None or options.resume is not None
    try:
        data = datasets.load_dataset(settings.dataset, settings.data_dir, download=not options.no_download)
        # files of the other published dataset: named (and trained) as what they are, or refused when the user or
        # the resumed checkpoint named the dataset
        chosen = f"--dataset {options.dataset}" if options.dataset else (f"{options.resume} (trained on it)"
                                                                          if options.resume else None)
        data, note = datasets.named_by_content(data, chosen, None if options.dataset else
                                               "resume with the data it was trained on, or train afresh",
                                               using="name, classes and recipe")
        if note:
            log(note)
        return data, replace(settings, dataset=data.name)
    except datasets.DataNotFoundError as missing:
        if explicit or settings.dataset != DEFAULT_DATASET:
            raise RunError(str(missing)) from None
        try:
            fallback = datasets.load_dataset(FALLBACK_DATASET, None, download=not options.no_download)
        except datasets.DataError:
            raise RunError(str(missing)) from None
        log(f"MNIST is not available here (not found, and it could not be downloaded): training on "
            f"Fashion-MNIST instead, from {fallback.source}. Use --data-dir DIR to point at MNIST files.")
        return fallback, replace(settings, dataset=FALLBACK_DATASET)
    except datasets.DataError as error:
        raise RunError(str(error)) from None


def describe(settings: RunSettings, data, device: str, resumed: TrainingState | None) -> str:
    """The line that says, before training, what is trained on what, how, and from where."""
    hyperparameters = settings.hyperparameters
    augmentation = Augmentation.parse(hyperparameters.augment).describe()
    resuming = ""
    if resumed is not None:
        step = f", step {resumed.step_in_epoch + 1}" if resumed.step_in_epoch else ""
        resuming = f"; resuming at epoch {resumed.epoch + 1}{step}"
    layers = ", reference layers" if settings.layers == "reference" else ""
    return (f"Training {settings.model} ({settings.impl}{layers}) on {device}, {settings.dtype}: "
            f"{hyperparameters.optimizer} lr {hyperparameters.lr:g} ({hyperparameters.schedule}), "
            f"batch {hyperparameters.batch_size}, {epochs_text(hyperparameters.epochs)}"
            f"{f', {augmentation}' if augmentation else ''}, recipe {settings.recipe}; {data.name}: "
            f"{len(data.train_labels)} train / {len(data.test_labels)} test images{resuming}")


def train_and_save(record: RunRecord, device_data: DeviceData, state: TrainingState, options: RunOptions, progress,
                   log) -> tuple[TrainingState, dict, bool]:
    """fit(), with a checkpoint after every epoch and, after Ctrl-C, one of the last completed step -> (the final
    state, the final metrics, whether Ctrl-C came in the last step, which finishes its epoch first). From here to the
    last save, Ctrl-C only asks training to stop after the step under way, and a second one does not cut short the
    checkpoint being written."""
    settings = record.settings
    with InterruptFlag() as ctrl_c:
        try:
            # Overflow shows up as a NaN/inf loss, which fit() reports in one line;
            # numpy's warnings would only add noise.
            with numpy.errstate(over="ignore", invalid="ignore"):
                state = fit(record.engine, device_data, settings.hyperparameters, record.backend.rng, state=state,
                            on_epoch_end=record.epoch_ended, progress=None if options.quiet else progress,
                            log=None if options.quiet else log, stop_after_steps=options.stop_after_steps,
                            interrupt=ctrl_c, graph=settings.graph)
        except Interrupted as stop:
            raise record.interrupted(stop.state) from None
        except Diverged as error:
            raise Diverged(f"{error}{record.last_good_text()}") from None
        return state, record.finished(state), ctrl_c.requested


def draw_plots(engine, device_data: DeviceData, data, result: RunResult, folder: str, state: TrainingState,
               stop_asked: bool) -> list:
    """The PNGs of a finished run (curves, confusion matrix, first-layer filters, mistakes) -> their paths. Ctrl-C
    before or while they are drawn ends in Interrupted, saying that the checkpoint and metrics are complete."""
    try:
        if stop_asked:
            raise KeyboardInterrupt
        from nets.report import plots

        predicted = predict_classes(engine, device_data.test_images)
        return plots.write_all_plots(folder, result.metrics, engine.state().params, data.test_images,
                                     data.test_labels, predicted, list(data.class_names))
    except KeyboardInterrupt:
        if not result.checkpoint_path:
            raise Interrupted(state, f"{interrupted_by()} while drawing the plots, after training finished.") from None
        raise Interrupted(state, f"{interrupted_by()} while drawing the plots, after training finished: "
                                 f"{result.checkpoint_path} and its metrics are complete; draw them with "
                                 f"{script_command('plot', result.checkpoint_path, '--out', folder)}") from None
