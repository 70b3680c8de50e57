"""A training run end to end: options -> settings -> engine -> data -> fit -> checkpoints, metrics and plots; and
resuming one (Resume: the checkpoint --resume names, checked for what a resume needs, put back into the engine).

scripts/train.py parses the command line into RunOptions (nets/train/settings.py) and calls `train_run` with the
engines it offers by impl name (the PyTorch one comes from nets/baseline/, which this wing never imports):

    result = train_run(options, {"nets": nets_engine_for_run, "torch": torch_engine_for_run})

User mistakes raise RunError or another NetsError (one line), before the first training step wherever they can
be known then; the CLI prints the line and exits non-zero. Ctrl-C ends in Interrupted (exit 130) after a
checkpoint of the last completed step is written; a NaN loss in Diverged (exit 3).
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
import uuid
from dataclasses import dataclass, field, replace

import numpy

import backend as backend_lib
from backend import AUTO_CPU
from nets.devices import open_backend, say_why_cpu
from nets.commands import script_command
from nets.errors import DeviceError, NetsError

from nets import checkpoint as checkpoints
from nets import outputs
from nets.data import datasets
from nets.data.augment import Augmentation
from nets.data.augment import resolve as resolve_augmentation
from nets.nn.inference import predict_classes
from nets.nn.models import build_model
from nets.nn.reference.models import build_reference_model
from nets.train.graph import eager_because
from nets.train.interrupt import InterruptFlag, Interrupted, interrupted_by
from nets.train.resume import Resume, settled
from nets.train.loop import DeviceData, Diverged, TrainingState, epochs_text, fit, interrupted_where
from nets.train.paths import (check_against_data, check_outputs, claim_and_save, output_paths, prepare_outputs,
                              saving_plan)
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


def choose_dataset(options: RunOptions, settings: RunSettings, say) -> tuple[datasets.Dataset, RunSettings]:
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
            say(note)
        return data, replace(settings, dataset=data.name)
    except datasets.DataNotFoundError as missing:
        if explicit or settings.dataset != DEFAULT_DATASET:
            raise RunError(str(missing)) from None
        try:
            fallback = datasets.load_dataset(FALLBACK_DATASET, None, download=not options.no_download)
        except datasets.DataError:
            raise RunError(str(missing)) from None
        say(f"MNIST is not available here (not found, and it could not be downloaded): training on "
            f"Fashion-MNIST instead, from {fallback.source}. Use --data-dir DIR to point at MNIST files.")
        return fallback, replace(settings, dataset=FALLBACK_DATASET)
    except datasets.DataError as error:
        raise RunError(str(error)) from None


def build_engine(settings: RunSettings, engines: dict):
    """The engine of settings.impl, its model initialised from the nets' initialisation (the same initial weights
    for both impls), drawn from the run's RNG. The nets compute on the backend of --device; the torch engine's
    model is initialised on the host and computes on torch's device (a GPU run of it needs no CuPy)."""
    backend = open_backend(settings.device if settings.impl == "nets" else "cpu", seed=settings.seed)
    build = build_reference_model if settings.strategy == "reference" else build_model
    model = build(settings.model, backend=backend, dtype=settings.dtype, init=settings.hyper.init, rng=backend.rng)
    try:
        return engines[settings.impl](settings, model), backend
    except DeviceError as error:
        raise RunError(f"--impl {settings.impl}: {error}") from None


def library_versions(backend) -> dict:
    """python, numpy, cupy (on the GPU) and torch (when installed) versions, for the metrics JSON."""
    versions = {"python": platform.python_version(), **backend.library_versions()}
    try:
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


def train_run(options: RunOptions, engines: dict, say=print, progress=None) -> RunResult:
    """Run the training the options describe, with engines[impl](settings, initial nets model) as the engine.
    Raises RunError (and other NetsErrors) for user mistakes, all before the first training step where they can
    be known then; see the module doc."""
    resumed = Resume.load(options.resume) if options.resume else None
    settings = resolve_settings(options, resumed.settings if resumed else None)
    settings = settled(options, settings, resumed, say)  # [nothing-lost] absolute --data-dir; a resume's changes
    paths = output_paths(options, settings)
    check_outputs(options, paths)
    engine, backend = build_engine(settings, engines)
    if settings.device == "auto" and engine.io.name == "cpu":  # a word only where a GPU is here but unusable
        say_why_cpu(backend, say) if settings.impl == "nets" else backend_lib.nvidia_driver_loaded() and say(
            AUTO_CPU + TORCH_NO_CUDA)
    if options.plot:  # say so now, not after the training
        from nets.report.plots import PlotError, require_matplotlib

        try:
            require_matplotlib()
        except PlotError as error:
            raise RunError(f"--plot needs matplotlib: {error}") from None

    data, settings = choose_dataset(options, settings, say)
    if paths.default and paths != output_paths(options, settings):  # the fallback dataset names the default path
        paths = output_paths(options, settings)
        check_outputs(options, paths)
    check_against_data(paths, data)
    if resumed:  # [nothing-lost] other files than it trained on: said
        resumed.check_data(data, say)
    if data.image_shape != MODEL_IMAGE_SHAPE:
        raise RunError(f"{data.source} holds {data.image_shape[0]}x{data.image_shape[1]} images; the models take "
                       f"{MODEL_IMAGE_SHAPE[0]}x{MODEL_IMAGE_SHAPE[1]} (MNIST's format).")
    datasets.require_examples(data, ("train", "test"), "training")
    settings = replace(settings, hyper=replace(settings.hyper, augment=resolve_augmentation(
        settings.hyper.augment, data.name, settings.model)))
    if resumed:
        resumed.check_position(settings, len(data.train_labels), options, say)
    device_data = DeviceData.move(engine.io, data, engine.input_shape, settings.dtype)
    state = resumed.load_into(engine, backend.rng, settings) if resumed else TrainingState()

    hyper, device = settings.hyper, "standin" if settings.device == "standin" else engine.io.name
    try:
        eager = eager_because(settings.graph, gpu=device != "cpu", impl=settings.impl, strategy=settings.strategy)
    except ValueError as error:
        raise RunError(str(error)) from None
    moves = Augmentation.parse(hyper.augment).describe()
    moves = f", {moves}" if moves else ""
    resuming = ""
    if resumed:
        resuming = f"; resuming at epoch {state.epoch + 1}" + (f", step {state.step_in_epoch + 1}" if state.step_in_epoch else "")
    layers = ", reference layers" if settings.strategy == "reference" else ""
    say(f"Training {settings.model} ({settings.impl}{layers}) on {device}, {settings.dtype}: "
        f"{hyper.optimizer} lr {hyper.lr:g} ({hyper.schedule}), batch {hyper.batch_size}, {epochs_text(hyper.epochs)}{moves}, "
        f"recipe {settings.recipe}; {data.name}: {len(data.train_labels)} train / {len(data.test_labels)} test images"
        f"{resuming}")

    if device != "cpu" and eager is not None:
        say(f"training step runs eager ({eager})")
    say(saving_plan(paths, resumed is not None))
    prepare_outputs(options, paths)
    versions = library_versions(backend)
    run_id = uuid.uuid4().hex  # [nothing-lost] in the checkpoint and its metrics JSON: the two belong together
    started = time.perf_counter()
    # What this run has saved: (path, where) of the last good checkpoint; the resumed file when written back to.
    kept = {"path": paths.checkpoint, "where": interrupted_where(state)} if resumed and paths.checkpoint and (
        outputs.same_file(paths.checkpoint, options.resume)) else {}

    def metrics_now(current: TrainingState, checkpoint: str | None) -> dict:
        history = current.history
        stopped = {"interrupted": {"epoch": current.epoch + 1, "step_in_epoch": current.step_in_epoch}} if (
            current.step_in_epoch) else {}
        return {
            "model": settings.model, "impl": settings.impl, "strategy": settings.strategy, "device": device,
            "dataset": data.name, "data_source": data.source, "recipe": settings.recipe, "dtype": settings.dtype,
            "seed": settings.seed,
            **hyper.as_dict(),
            "test_accuracy": history[-1]["test_accuracy"] if history else None,
            "epochs": history,
            "train_seconds": sum(record["seconds"] for record in history),
            "wall_seconds": time.perf_counter() - started,
            "versions": versions,
            "checkpoint": checkpoint, "run_id": run_id, **stopped,
        }

    def save(path: str, current: TrainingState) -> None:
        """The checkpoint of `current` to `path`, never of a diverged model (Diverged instead)."""
        saved = engine.state()

        def write(target):
            checkpoints.save_checkpoint(
                target, saved.params, engine.model_config, optimizer_state=saved.optimizer_state, epoch=current.epoch,
                step_in_epoch=current.step_in_epoch, rng_state=backend.rng.bit_generator.state,
                epoch_rng_state=current.epoch_rng_state, config=settings.as_dict(), metrics=current.history,
                dataset=data.name, images_in_epoch=None if current.images_in_epoch in (
                    None, current.step_in_epoch * hyper.batch_size) else current.images_in_epoch,
                run_id=run_id, data_checksums=data.checksums or None)

        try:
            if paths.unclaimed:  # [nothing-lost] the first save to a numbered name claims it, and its metrics' name
                note = claim_and_save(paths, write, lambda target: metrics_now(current, target))
                path = paths.interrupt
                if note:
                    say(note)
            else:
                write(path)
        except checkpoints.NonFiniteError as error:
            raise Diverged(f"the parameters became NaN or infinite {interrupted_where(current)} ({error.parameter} "
                           f"holds {error.count} such values) while the loss was still finite; training stopped "
                           "without saving them. Try a smaller --lr.") from None
        kept.update(path=path, where=interrupted_where(current))

    def kept_text() -> str:
        if not kept:
            return " No checkpoint was written."
        return f" The last good checkpoint is {kept['path']} ({kept['where']})."

    def on_epoch_end(current: TrainingState) -> None:
        if paths.checkpoint:
            save(paths.checkpoint, current)
        if paths.metrics:
            outputs.write_json(paths.metrics, metrics_now(current, paths.checkpoint), paths.metrics_label)

    # From here to the last save, Ctrl-C only asks training to stop after the step under way, and a second one does
    # not cut short the checkpoint being written.
    with InterruptFlag() as ctrl_c:
        try:
            try:
                # Overflow shows up as a NaN/inf loss, which fit() reports in one line; numpy's warnings would only
                # add noise.
                with numpy.errstate(over="ignore", invalid="ignore"):
                    state = fit(engine, device_data, hyper, backend.rng, state=state, on_epoch_end=on_epoch_end,
                                progress=None if options.quiet else progress, log=None if options.quiet else say,
                                stop_after_steps=options.stop_after_steps, interrupt=ctrl_c, graph=settings.graph)
            except Interrupted as stop:
                raise save_interrupted(stop.state, save, paths, metrics_now) from None
        except Diverged as error:
            raise Diverged(f"{error}{kept_text()}") from None
        metrics = metrics_now(state, paths.checkpoint)
        if paths.metrics:
            outputs.write_json(paths.metrics, metrics, paths.metrics_label)
    result = RunResult(metrics=metrics, checkpoint_path=paths.checkpoint, metrics_path=paths.metrics,
                       resumed_from=options.resume, data_dir=settings.data_dir)
    if options.plot:
        try:
            if ctrl_c.requested:
                raise KeyboardInterrupt
            from nets.report import plots  # the PNGs: curves, confusion matrix, first-layer filters, mistakes

            predicted = predict_classes(engine, device_data.test_images)
            result.plot_paths = plots.write_all_plots(options.plot, metrics, engine.state().params, data.test_images,
                                                      data.test_labels, predicted, list(data.class_names))
        except KeyboardInterrupt:
            if not paths.checkpoint:
                raise Interrupted(state, f"{interrupted_by()} while drawing the plots, after training "
                                         "finished.") from None
            raise Interrupted(state, f"{interrupted_by()} while drawing the plots, after training finished: "
                                     f"{paths.checkpoint} and its metrics are complete; draw them with "
                                     f"{script_command('plot', paths.checkpoint, '--out', options.plot)}") from None
    return result


def save_interrupted(state: TrainingState, save, paths, metrics_now) -> NetsError:
    """After Ctrl-C: the checkpoint of the last completed step and its metrics written; -> the error to raise
    (Interrupted saying where they went, Diverged, or RunError when they could not be written)."""
    where = interrupted_where(state)
    try:
        outputs.prepare_file(paths.interrupt, paths.checkpoint_label if paths.checkpoint else "the Ctrl-C checkpoint")
        save(paths.interrupt, state)
    except Diverged as error:
        return Diverged(f"{interrupted_by()} {where}, and {error}")
    except NetsError as error:
        return RunError(f"{interrupted_by()} {where}, but no checkpoint could be written: {error}")
    try:
        for path, label in {paths.interrupt_metrics: "the metrics", paths.metrics: paths.metrics_label}.items():
            if path:
                outputs.write_json(path, metrics_now(state, paths.interrupt), label)
    except NetsError as error:
        return RunError(f"{interrupted_by()} {where}: checkpoint written to {paths.interrupt}, but not its metrics: "
                        f"{error}")
    return Interrupted(state, f"{interrupted_by()} {where}: checkpoint written to {paths.interrupt}; continue with "
                              f"--resume {paths.interrupt}")

