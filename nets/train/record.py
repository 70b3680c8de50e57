"""What a training run keeps as it goes: its metrics, its checkpoints and the last good one, and where it stopped.

    record = RunRecord(settings, paths, engine, backend, data, device, log=print)
    record.epoch_ended(state)            # after each epoch: the checkpoint, then its metrics JSON
    error = record.interrupted(state)    # after Ctrl-C: the checkpoint of the last completed step -> the error to raise
    record.finished(state)               # the final metrics, written and returned

Every checkpoint and the metrics JSON beside it carry the run's id, so a metrics file is known to belong to its
checkpoint. A diverged model is never saved: Diverged says which checkpoint is the last good one.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
import uuid

from nets import checkpoint as checkpoints
from nets import outputs
from nets.errors import NetsError
from nets.train.interrupt import Interrupted, interrupted_by
from nets.train.loop import Diverged, TrainingState, interrupted_where
from nets.train.paths import OutputPaths, claim_and_save
from nets.train.settings import RunError, RunSettings

__all__ = ["RunRecord", "library_versions"]


def library_versions(backend) -> dict:
    """python, numpy, cupy (on the GPU) and torch (when installed) versions, for the metrics JSON."""
    versions = {"python": platform.python_version(), **backend.library_versions()}
    try:
        versions["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions


class RunRecord:
    """A run's checkpoints and metrics. last_good: (path, where the run stood) of the last checkpoint this run wrote,
    or of the checkpoint it resumed from when it writes back into it; None before the first."""

    def __init__(self, settings: RunSettings, paths: OutputPaths, engine, backend, data, device: str,
                 resumed_from: str | None = None, resumed_state: TrainingState | None = None, log=print):
        """data: the nets.data.datasets.Dataset trained on (its name, source and checksums go into the files)."""
        self.settings, self.paths, self.engine, self.backend, self.log = settings, paths, engine, backend, log
        self.data_name, self.data_source, self.device = data.name, data.source, device
        self.data_checksums = data.checksums or None
        self.run_id = uuid.uuid4().hex
        self.versions = library_versions(backend)
        self.started = time.perf_counter()
        writes_back = resumed_from and paths.checkpoint and outputs.same_file(paths.checkpoint, resumed_from)
        self.last_good = (paths.checkpoint, interrupted_where(resumed_state)) if writes_back else None

    def metrics(self, state: TrainingState, checkpoint: str | None) -> dict:
        """The metrics JSON of the run as it stands: settings, versions, one record per epoch, its checkpoint."""
        settings, history = self.settings, state.history
        stopped = {"interrupted": {"epoch": state.epoch + 1, "step_in_epoch": state.step_in_epoch}} if (
            state.step_in_epoch) else {}
        return {
            "run_id": self.run_id, "model": settings.model, "impl": settings.impl, "layers": settings.layers,
            "device": self.device, "dataset": self.data_name, "data_source": self.data_source,
            "recipe": settings.recipe, "dtype": settings.dtype, "seed": settings.seed,
            **settings.hyperparameters.as_dict(),
            "test_accuracy": history[-1]["test_accuracy"] if history else None,
            "epochs": history,
            "train_seconds": sum(record["seconds"] for record in history),
            "wall_seconds": time.perf_counter() - self.started,
            "versions": self.versions,
            "checkpoint": checkpoint, **stopped,
        }

    def save(self, path: str, state: TrainingState) -> str:
        """The checkpoint of `state` to `path` -> where it went: the first save to a numbered name claims the first
        free number with its metrics' name (paths.claim_and_save), so runs started together keep their own pair.
        Diverged instead of saving NaN or infinite parameters."""
        saved, hyperparameters = self.engine.state(), self.settings.hyperparameters
        images = None if state.images_in_epoch in (None, state.step_in_epoch * hyperparameters.batch_size) else (
            state.images_in_epoch)

        def write(target):
            checkpoints.save_checkpoint(
                target, saved.params, self.engine.model_config, optimizer_state=saved.optimizer_state,
                epoch=state.epoch, step_in_epoch=state.step_in_epoch, rng_state=self.backend.rng.bit_generator.state,
                epoch_rng_state=state.epoch_rng_state, config=self.settings.as_dict(), metrics=state.history,
                dataset=self.data_name, images_in_epoch=images, run_id=self.run_id, data_checksums=self.data_checksums)

        try:
            if self.paths.unclaimed:
                note = claim_and_save(self.paths, write, lambda target: self.metrics(state, target))
                path = self.paths.interrupt
                if note:
                    self.log(note)
            else:
                write(path)
        except checkpoints.NonFiniteError as error:
            raise Diverged(f"the parameters became NaN or infinite {interrupted_where(state)} ({error.parameter} "
                           f"holds {error.count} such values) while the loss was still finite; training stopped "
                           "without saving them. Try a smaller --lr.") from None
        self.last_good = (path, interrupted_where(state))
        return path

    def last_good_text(self) -> str:
        """" The last good checkpoint is X (after N epochs).", for the message that ends a diverged run."""
        if self.last_good is None:
            return " No checkpoint was written."
        return f" The last good checkpoint is {self.last_good[0]} ({self.last_good[1]})."

    def epoch_ended(self, state: TrainingState) -> None:
        """After each epoch: the checkpoint, then the metrics that name it."""
        paths = self.paths
        if paths.checkpoint:
            self.save(paths.checkpoint, state)
        if paths.metrics:
            outputs.write_json(paths.metrics, self.metrics(state, paths.checkpoint), paths.metrics_label)

    def finished(self, state: TrainingState) -> dict:
        """The final metrics, written where the run's metrics go."""
        metrics = self.metrics(state, self.paths.checkpoint)
        if self.paths.metrics:
            outputs.write_json(self.paths.metrics, metrics, self.paths.metrics_label)
        return metrics

    def interrupted(self, state: TrainingState) -> NetsError:
        """After Ctrl-C: the checkpoint of the last completed step and its metrics written -> the error to raise
        (Interrupted saying where they went, Diverged, or RunError when they could not be written)."""
        paths, where = self.paths, interrupted_where(state)
        try:
            outputs.prepare_file(paths.interrupt,
                                 paths.checkpoint_label if paths.checkpoint else "the Ctrl-C checkpoint")
            saved_to = self.save(paths.interrupt, state)
        except Diverged as error:
            return Diverged(f"{interrupted_by()} {where}, and {error}")
        except NetsError as error:
            return RunError(f"{interrupted_by()} {where}, but no checkpoint could be written: {error}")
        try:
            for path, label in {paths.interrupt_metrics: "the metrics", paths.metrics: paths.metrics_label}.items():
                if path:
                    outputs.write_json(path, self.metrics(state, saved_to), label)
        except NetsError as error:
            return RunError(f"{interrupted_by()} {where}: checkpoint written to {saved_to}, but not its metrics: "
                            f"{error}")
        return Interrupted(state, f"{interrupted_by()} {where}: checkpoint written to {saved_to}; continue with "
                                  f"--resume {saved_to}")
