"""Resuming a run: the checkpoint --resume names (Resume), checked for what a resume needs and against what this run
asks for (the dataset, the schedule, the data files it trained on), then put back into the engine.

    resumed = Resume.load(options.resume)              # RunError, one line, for a checkpoint that cannot resume
    settings = resolve_settings(options, resumed.settings)
    settings = settled(options, settings, resumed, log)  # --data-dir made absolute; another --dataset refused
    resumed.check_data(data, log)                        # other files than it trained on: said
    resumed.check_position(settings, train_count, options, log)   # refused, or said in one line
    state = resumed.load_into(engine, rng, settings)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy

from nets.commands import script_command

from nets import checkpoint as checkpoints
from nets.data.datasets import TITLES
from nets.nn.architecture import parameter_shapes
from nets.optim.schedules import learning_rate
from nets.train.engine import EngineState
from nets.train.loop import TrainingState, epochs_text
from nets.train.settings import STORED_HYPERPARAMETERS_KEY, RunError, RunOptions, RunSettings
from nets.validate import Invalid, real

__all__ = ["Resume", "settled"]

SCHEDULE_WORDS = {"onecycle": "one-cycle"}


@dataclass
class Resume:
    """The checkpoint --resume names (`checkpoint`, at `path`) and the settings of its run, read once."""

    checkpoint: checkpoints.Checkpoint
    settings: RunSettings
    path: str

    @classmethod
    def load(cls, path) -> "Resume":
        """The checkpoint with the training state a resume needs; RunError, one line, otherwise."""
        try:
            os.stat(path)
        except PermissionError as error:  # a folder on the way cannot be entered: not "no checkpoint there"
            raise RunError(f"--resume {path} cannot be reached ({error.strerror}); check the permissions of the "
                           "folders on its path.") from None
        except OSError:
            pass  # missing, or a name too long: load_checkpoint says which
        try:
            if os.path.isfile(path) and checkpoints.is_torch_file(path):
                raise RunError(f"{path} is a PyTorch file (torch.save): it holds no optimizer state, epoch or RNG "
                               f"state, so training cannot resume from it; score it with "
                               f"{script_command('evaluate', path)}.")
            resumed = checkpoints.load_checkpoint(path)
        except checkpoints.CheckpointError as error:
            raise RunError(str(error)) from None
        if not resumed.config or STORED_HYPERPARAMETERS_KEY not in resumed.config:
            raise RunError(f"{path} holds weights but no training state; it can be evaluated, not resumed.")
        try:
            checkpoints.restore_rng(resumed, numpy.random.default_rng())  # the run's own is set in load_into
        except checkpoints.CheckpointError as error:
            raise RunError(f"cannot resume from {path}: {error}") from None
        history = resumed.metrics if resumed.metrics is not None else []
        if not isinstance(history, list) or not all(
                isinstance(record, dict) and all(_is_number(record.get(key)) for key in ("seconds", "test_accuracy"))
                for record in history):
            raise RunError(f"{path} has a meta/metrics entry that is not the per-epoch list train.py writes; "
                           "it cannot be resumed.")
        try:
            settings = RunSettings.from_dict(resumed.config)
        except (ValueError, TypeError) as error:  # TypeError: unknown or missing settings
            raise RunError(f"cannot use these settings from {path} (meta/config): {error}") from None
        return cls(resumed, settings, str(path))

    @property
    def images_done(self) -> int:
        """The images of the epoch under way that the checkpoint's run already trained on (in that epoch's order)."""
        if self.checkpoint.images_in_epoch is not None:
            return self.checkpoint.images_in_epoch
        return self.checkpoint.step_in_epoch * self.settings.hyperparameters.batch_size

    def check_position(self, settings: RunSettings, train_count: int, options: RunOptions, log) -> None:
        """The resumed epoch and step fit this run, a mid-epoch resume with another batch size is said, and extending
        a one-cycle schedule is never silent."""
        path, resumed = self.path, self.checkpoint
        hyperparameters, planned = settings.hyperparameters, self.settings.hyperparameters
        steps_per_epoch = math.ceil(train_count / hyperparameters.batch_size)
        done = self.images_done
        if done >= train_count:
            raise RunError(f"{path} has meta/step_in_epoch {resumed.step_in_epoch} ({done} images of epoch "
                           f"{resumed.epoch + 1} done), but an epoch here has only {train_count} images "
                           f"({steps_per_epoch} steps of batch {hyperparameters.batch_size}); resume with the data it "
                           "was trained with.")
        if resumed.epoch >= hyperparameters.epochs:
            raise RunError(f"{path} already finished {epochs_text(resumed.epoch)}; pass --epochs above {resumed.epoch} "
                           "to train on.")
        if done and done != resumed.step_in_epoch * hyperparameters.batch_size:
            log(f"note: {path} stopped {done} of {train_count} images into epoch {resumed.epoch + 1}; this run trains "
                f"the other {train_count - done} of that epoch in its order, in batches of "
                f"{hyperparameters.batch_size}, so each image is seen once in the epoch.")
        if planned.schedule != "onecycle" or hyperparameters.schedule != "onecycle":
            return
        if (planned.epochs, planned.batch_size) == (hyperparameters.epochs, hyperparameters.batch_size):
            return  # the same plan of steps: the cycle continues exactly (a new --lr is an explicit change)
        # What the first run did at its last step, and what the re-planned cycle does at the next one.
        planned_steps = math.ceil(train_count / planned.batch_size)
        steps_done = resumed.epoch * planned_steps + resumed.step_in_epoch
        then = learning_rate("onecycle", planned.lr, min(max(steps_done - 1, 0), planned_steps * planned.epochs - 1),
                             planned_steps * planned.epochs)
        now = learning_rate("onecycle", hyperparameters.lr,
                            resumed.epoch * steps_per_epoch + done // hyperparameters.batch_size,
                            steps_per_epoch * hyperparameters.epochs)
        change = (f"{path} was trained under a one-cycle schedule planned for {epochs_text(planned.epochs)} (batch "
                  f"{planned.batch_size}, peak lr {planned.lr:g}); this run re-plans it for "
                  f"{epochs_text(hyperparameters.epochs)} (batch {hyperparameters.batch_size}, peak lr "
                  f"{hyperparameters.lr:g}), so the learning rate goes from {then:.3g} at its last step to {now:.3g}")
        if options.schedule is None:
            raise RunError(f"{change}, which is not what {epochs_text(hyperparameters.epochs)} in one go would do. "
                           f"Train afresh with --epochs {hyperparameters.epochs} for that; add --schedule constant "
                           "--lr F to train on at a fixed rate; or add --schedule onecycle to re-plan the cycle "
                           "anyway.")
        log(f"note: {change} (--schedule onecycle); only a resume with the planned --epochs continues exactly.")

    def check_data(self, data, log) -> None:
        """Say, in one line, when the data files (a nets.data.datasets.Dataset) are not those the checkpoint's run
        trained on, by the checksums it recorded (an older checkpoint records none: nothing is said)."""
        recorded = self.checkpoint.data_checksums
        if not recorded or not data.checksums or recorded == data.checksums:
            return
        differ = [name for name in sorted(set(recorded) | set(data.checksums))
                  if recorded.get(name) != data.checksums.get(name)]
        log(f"note: the files in {data.directory} are not those {self.path} was trained on ({', '.join(differ)} "
            f"{'differs' if len(differ) == 1 else 'differ'} from the checksums it recorded); training goes on with "
            "these.")

    def load_into(self, engine, rng: numpy.random.Generator, settings: RunSettings) -> TrainingState:
        """The checkpoint's weights and optimizer state into the engine, its RNG state into `rng` -> where training
        goes on (in batches of this run's size from the image it stopped at); RunError when they do not fit."""
        resumed, path = self.checkpoint, self.path
        expected = {name: tuple(shape) for name, shape in parameter_shapes(engine.model_config).items()}
        given = {name: tuple(array.shape) for name, array in resumed.params.items()}
        if given != expected:
            differ = next((f"{name} is {given.get(name)} there but {shape} here" for name, shape in expected.items()
                           if given.get(name) != shape), "its parameter names differ")
            raise RunError(f"cannot resume from {path}: its {resumed.model_name} is not the {settings.model} "
                           f"train.py builds ({differ}); train.py resumes only its own models.")
        try:
            engine.load_state(EngineState(resumed.params, resumed.optimizer_state))
            checkpoints.restore_rng(resumed, rng)
        except (ValueError, checkpoints.CheckpointError) as error:
            raise RunError(f"cannot resume from {path}: {error}") from None
        done = self.images_done
        return TrainingState(epoch=resumed.epoch, step_in_epoch=done // settings.hyperparameters.batch_size,
                             images_in_epoch=done, epoch_rng_state=resumed.epoch_rng_state,
                             history=list(resumed.metrics or []))


def _is_number(value) -> bool:
    try:
        real(value, "a metric")
    except Invalid:
        return False
    return True


def settled(options: RunOptions, settings: RunSettings, resumed: Resume | None, log) -> RunSettings:
    """The run's settings with --data-dir as an absolute path, so that a resume from another folder reads the files the
    run read (a path recorded relative by an older checkpoint is said); for a resume, another --dataset refused and
    another schedule said, in one line each."""
    data_dir = options.data_dir
    if data_dir is None and resumed and settings.data_dir and not os.path.isabs(os.path.expanduser(settings.data_dir)):
        data_dir = settings.data_dir
        log(f"note: {resumed.path} names --data-dir {data_dir} relative to the folder it was trained in; it is read "
            f"from {os.path.abspath(os.path.expanduser(data_dir))} here (pass --data-dir to read another).")
    if data_dir is not None:
        settings = replace(settings, data_dir=os.path.abspath(os.path.expanduser(data_dir)))
    if resumed is None:
        return settings
    before = resumed.settings
    if options.dataset is not None and options.dataset != before.dataset:
        raise RunError(f"{resumed.path} was trained on {TITLES[before.dataset]}; --dataset {options.dataset} would "
                       f"go on with other data. Resume without --dataset, or train afresh with --dataset "
                       f"{options.dataset}.")
    was, now = before.hyperparameters, settings.hyperparameters
    if was.schedule != now.schedule:
        given = f"--schedule {now.schedule}" if options.schedule is not None else f"--recipe {settings.recipe}"
        then, going = (f"at the constant lr {each.lr:g}" if each.schedule == "constant" else
                       f"under a {SCHEDULE_WORDS.get(each.schedule, each.schedule)} schedule planned for "
                       f"{epochs_text(each.epochs)} (peak lr {each.lr:g})" for each in (was, now))
        if now.schedule != "constant":
            going += ", from the point that schedule has reached by now"
        log(f"note: {resumed.path} was trained {then}; this run goes on {going} ({given}).")
    return settings
