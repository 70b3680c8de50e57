"""The training loop: `fit` runs the epochs, `train_epoch` the steps of one.

    state = fit(engine, data, hyperparameters, rng)   # data: DeviceData, a Hyperparameters -> TrainingState

Read `fit` and `train_epoch` first: each is one screen, like the loop of any textbook (for each epoch: for each
batch: forward, loss, backward, update; then evaluate). What a real run also needs lives in the helpers below them:
the epoch's order and the images' moves drawn on the host and copied to the device once (Epochs.start), the learning
rate of every step planned on the device, the full-batch step replayed as a CUDA graph on a GPU, a progress bar,
the running loss read back every few steps (the NaN check), and Ctrl-C honoured after the step under way.

The loop drives an *engine* (nets/train/engine.py for the hand-written nets, nets/baseline/engine.py for the PyTorch
baseline), so both implementations share the same data order, schedule, metrics and checkpoints. Data lives on the
device for the whole run; inside a step nothing crosses between host and device.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy

from nets.data.augment import Augmentation, ImageMoves
from nets.data.batches import EpochOrder
from nets.data.datasets import to_labels, to_model_input
from nets.errors import NetsError
from nets.nn.architecture import output_count
from nets.nn.inference import loss_and_correct
from nets.optim.schedules import learning_rate
from nets.train.interrupt import InterruptFlag, Interrupted
from nets.train.settings import Hyperparameters

__all__ = ["DeviceData", "Diverged", "TrainingState", "epochs_text", "fit", "format_epoch", "interrupted_where",
           "train_epoch"]
EXIT_DIVERGED = 3
CHANCE_MARGIN = 0.02  # a training accuracy this close to 1 / classes for two epochs is learning nothing


class Diverged(NetsError):
    """The loss became NaN or infinite; the message says when and what to try. Nothing is saved after the last
    good epoch."""

    exit_code = EXIT_DIVERGED


@dataclass
class TrainingState:
    """Where a run stands: enough, with the engine's weights and optimizer state, to resume exactly.

    epoch: completed epochs. step_in_epoch: completed steps of the epoch under way (0 at a boundary).
    epoch_rng_state: the shuffling RNG's state when the epoch under way began (it redraws that epoch's order).
    history: one metrics dict per completed epoch.
    images_in_epoch: the images of the epoch under way already trained on, in its order; None means step_in_epoch
        whole batches (it differs when a run resumed mid-epoch with another batch size, and goes on from that image).
    """

    epoch: int = 0
    step_in_epoch: int = 0
    epoch_rng_state: dict | None = None
    history: list = field(default_factory=list)
    images_in_epoch: int | None = None

    def images_done(self, batch_size: int) -> int:
        """Images of the epoch under way already trained on."""
        return self.step_in_epoch * batch_size if self.images_in_epoch is None else self.images_in_epoch


@dataclass
class DeviceData:
    """A dataset as the model's inputs (floats in [0, 1]) and int64 labels, moved to the engine's device once.

    image_width: how wide one image is (the MLP's inputs are flat rows); dtype: the inputs' dtype name."""

    train_images: object
    train_labels: object
    test_images: object
    test_labels: object
    image_width: int
    dtype: str = "float32"

    @classmethod
    def move(cls, backend, data, input_shape, dtype: str) -> "DeviceData":
        """data: a nets.data.datasets.Dataset; backend: the engine's array calls; input_shape: one example."""
        def images(raw):
            return backend.asarray(to_model_input(raw, input_shape, dtype))

        def labels(raw):
            return backend.asarray(to_labels(raw))

        return cls(images(data.train_images), labels(data.train_labels), images(data.test_images),
                   labels(data.test_labels), image_width=data.image_shape[1], dtype=numpy.dtype(dtype).name)


def fit(engine, data, hyperparameters: Hyperparameters, rng: numpy.random.Generator, *,
        state: TrainingState | None = None, on_epoch_end=None, progress=None, log=print,
        stop_after_steps: int | None = None, interrupt: InterruptFlag | None = None,
        graph: str = "auto") -> TrainingState:
    """Train `engine` (nets/train/engine.py's Engine) on `data` (a DeviceData) for hyperparameters.epochs epochs,
    from `state`.

    on_epoch_end(state): called after each epoch's metrics are in state.history (checkpoints go there).
    progress(total, description): returns a progress bar (tqdm-like) or None for no bar. log(line): what is said.
    stop_after_steps: act as if Ctrl-C came after this many steps of this call (for tests of resume).
    interrupt: an InterruptFlag already entered by the caller (who then holds Ctrl-C while it saves).
    graph: "auto", "on" or "off": whether the full-batch step is captured as a CUDA graph (engine.graphed).
    Raises Interrupted (Ctrl-C, after a completed step) and Diverged (NaN/inf loss).
    """
    state = state or TrainingState()
    lines = Lines(log)
    epochs = Epochs(engine, data, hyperparameters, graph, note=lines.log)
    stop = Stop(interrupt, stop_after_steps)
    with stop.held(), epochs.on_device():
        while state.epoch < hyperparameters.epochs:
            epochs.start(state, rng)
            with lines.progress_bar(progress, len(epochs.order), f"epoch {state.epoch + 1}/{hyperparameters.epochs}",
                                    done=state.step_in_epoch) as bar:
                images, loss_sum, hits, seconds = train_epoch(epochs, state, stop, bar)
            test_loss, test_correct = loss_and_correct(engine, data.test_images, data.test_labels)
            record = {"epoch": state.epoch + 1, "train_loss": loss_sum / images, "train_accuracy": hits / images,
                      "test_loss": test_loss, "test_accuracy": test_correct / len(data.test_labels),
                      "seconds": seconds, "images_per_second": images / max(seconds, 1e-9),
                      "lr_end": epochs.learning_rate((state.epoch + 1) * len(epochs.order) - 1)}
            if images != len(data.train_labels):  # resumed mid-epoch: the loss and accuracy cover the steps run here
                record["partial_epoch_images"] = images
            state.history.append(record)
            state.epoch, state.step_in_epoch, state.images_in_epoch = state.epoch + 1, 0, None
            state.epoch_rng_state = rng.bit_generator.state
            if on_epoch_end is not None:
                on_epoch_end(state)
            lines.log(format_epoch(record, hyperparameters.epochs, len(data.train_labels)))
            lines.warn_at_chance(state.history, output_count(engine.model_config))
            if stop.requested() and state.epoch < hyperparameters.epochs:
                raise Interrupted(state)
    return state


def train_epoch(epochs: "Epochs", state: TrainingState, stop: "Stop",
                bar: "ProgressBar") -> tuple[int, float, int, float]:
    """The steps of one epoch, from where `state` stands -> (images, summed loss, hits, seconds).

    Each batch: forward, loss, backward and update (NetsEngine.train_step), or the same step replayed as a CUDA graph
    once captured. Every few steps the running loss is read back (the NaN check and the progress bar); Ctrl-C stops
    the run after the step under way, except in an epoch's last step, which finishes the epoch first.
    """
    engine, order, data = epochs.engine, epochs.order, epochs.data
    images, loss_sum, hits, started = 0, 0.0, 0, time.perf_counter()
    for batch in order.batches():
        if batch.full and epochs.graphed is not None and epochs.graphed.ready():
            epochs.graphed.replay()  # the full-batch step as a CUDA graph (captured after one eager step)
        else:
            engine.train_step(*engine.batch(data.train_images, data.train_labels, order.rows(batch), epochs.moves))
        images += batch.size
        state.step_in_epoch, state.images_in_epoch = state.step_in_epoch + 1, batch.start + batch.size
        stopping = stop.after_step() and not batch.last
        if batch.last or stopping or bar.due(state.step_in_epoch):
            loss_sum, hits = engine.totals()  # the only read from the device: every few steps
            check_finite(loss_sum / images, state)
            bar.show(state.step_in_epoch, loss_sum / images, hits / images, images / (time.perf_counter() - started))
        if stopping:
            raise Interrupted(state)
    engine.backend.synchronize()
    return images, loss_sum, hits, time.perf_counter() - started


class Epochs:
    """What every epoch of a run shares, set up once: the epoch's order on the device (EpochOrder), the images' moves
    (ImageMoves, or None), the full-batch step captured as a CUDA graph (GraphedStep, or None: every step eager), and
    the learning-rate schedule."""

    def __init__(self, engine, data: DeviceData, hyperparameters: Hyperparameters, graph: str, note):
        self.engine, self.data, self.hyperparameters = engine, data, hyperparameters
        self.count = len(data.train_labels)
        self.order = EpochOrder(engine.backend, self.count, hyperparameters.batch_size)
        self.total_steps = len(self.order) * hyperparameters.epochs
        self.augmentation = Augmentation.parse(hyperparameters.augment)  # "auto" is resolved per dataset before fit
        self.moves = None
        if self.augmentation.active:
            pixels = math.prod(data.train_images.shape[1:])
            tables = self.augmentation.tables((pixels // data.image_width, data.image_width))
            self.moves = ImageMoves(engine.backend, tables, data.dtype)
        self.graphed = engine.graphed(self.full_batch_step, graph, note=note)

    def full_batch_step(self) -> None:
        """One full batch's step with everything read on the device: its rows at the order's counter, its moves, the
        learning rate at the optimizer's (what a CUDA graph captures and replays)."""
        data = self.data
        self.engine.train_step(*self.engine.batch(data.train_images, data.train_labels, self.order.next_rows(),
                                                  self.moves))

    def on_device(self):
        """The run's device work on the graph's stream, when the step is captured."""
        return self.graphed.on_stream() if self.graphed is not None else contextlib.nullcontext()

    def learning_rate(self, step: int) -> float:
        return learning_rate(self.hyperparameters.schedule, self.hyperparameters.lr, step, self.total_steps)

    def start(self, state: TrainingState, rng: numpy.random.Generator) -> None:
        """Epoch state.epoch + 1, from where `state` stands: its order and moves drawn from `rng` (drawn again from
        the epoch's saved RNG state when resuming mid-epoch), each of its steps' learning rate planned on the device
        in one copy, the running totals reset."""
        done = state.images_done(self.hyperparameters.batch_size)
        if done > 0:
            rng.bit_generator.state = state.epoch_rng_state
        else:
            state.epoch_rng_state = rng.bit_generator.state
        self.order.start(rng.permutation(self.count), start_image=done)
        if self.moves is not None:  # each image's move, from the same host RNG
            self.moves.epoch(self.augmentation.draw(rng, self.count))
        first = state.epoch * len(self.order) + state.step_in_epoch
        self.engine.plan([self.learning_rate(first + step) for step in range(self.order.steps_left())],
                         capacity=len(self.order))
        self.engine.reset_totals()


class Stop:
    """Whether the run should stop after the step under way: Ctrl-C (an InterruptFlag), or, for tests of resume,
    a number of steps of this call."""

    def __init__(self, interrupt: InterruptFlag | None, after_steps: int | None):
        self.interrupt, self.after_steps, self.steps = interrupt, after_steps, 0

    def held(self):
        """Ctrl-C turned into the flag for the block (unless the caller holds it already)."""
        if self.interrupt is not None:
            return contextlib.nullcontext(self.interrupt)
        self.interrupt = InterruptFlag()
        return self.interrupt

    def after_step(self) -> bool:
        self.steps += 1
        return self.requested()

    def requested(self) -> bool:
        return self.interrupt.requested or (self.after_steps is not None and self.steps >= self.after_steps)


class Lines:
    """What a run says: log(line), above the progress bar while there is one; None says nothing."""

    def __init__(self, log):
        self.write, self.bar, self.warned_at_chance = log, None, False

    def log(self, line: str) -> None:
        if self.write is None:
            return
        bar = self.bar.bar if self.bar is not None else None
        (bar.write if bar is not None and hasattr(bar, "write") else self.write)(line)

    @contextlib.contextmanager
    def progress_bar(self, progress, total: int, description: str, done: int):
        self.bar = ProgressBar(progress, total, description, done)
        try:
            yield self.bar
        finally:
            self.bar.close()
            self.bar = None

    def warn_at_chance(self, history: list, classes: int) -> None:
        """One warning line once two epochs in a row trained at chance (within CHANCE_MARGIN of 1 / classes)."""
        at_chance = [abs(record["train_accuracy"] - 1 / classes) <= CHANCE_MARGIN for record in history[-2:]]
        if len(at_chance) == 2 and all(at_chance) and not self.warned_at_chance:
            self.warned_at_chance = True
            self.log(f"warning: the training accuracy has stayed at chance ({history[-1]['train_accuracy']:.2%}, "
                     f"1 in {classes}) for 2 epochs: the model is not learning; try a smaller --lr.")


class ProgressBar:
    """An epoch's progress bar: progress(total, description) -> a tqdm-like bar, or None for none."""

    def __init__(self, progress, total: int, description: str, done: int):
        self.bar = progress(total, description) if progress else None
        self.every = max(1, min(50, total // 20))  # steps between read-backs of the running loss
        if self.bar is not None and done:
            self.bar.update(done)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def show(self, step: int, mean_loss: float, accuracy: float, images_per_second: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {mean_loss:.4f} acc {accuracy:.2%} {images_per_second:,.0f} img/s",
                                     refresh=False)
            self.bar.update(step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def check_finite(mean_loss: float, state: TrainingState) -> None:
    """Diverged, one line, when the running loss is NaN or infinite."""
    if not math.isfinite(mean_loss):
        raise Diverged(f"the loss became {mean_loss} in epoch {state.epoch + 1} (by step {state.step_in_epoch}); "
                       "training stopped. Try a smaller --lr.")


def format_epoch(record: dict, epochs: int, images: int | None = None) -> str:
    """One line per epoch: loss, train and test accuracy, seconds and images per second; an epoch resumed part
    way says how many of its images it covered."""
    width = len(str(epochs))
    partial = record.get("partial_epoch_images")
    covered = f" (last {partial:,} of {images:,} images)" if partial is not None and images else ""
    return (f"epoch {record['epoch']:>{width}}/{epochs}{covered}  loss {record['train_loss']:.4f}  "
            f"train {record['train_accuracy']:.2%}  test {record['test_accuracy']:.2%}  "
            f"{record['seconds']:.1f} s  {record['images_per_second']:,.0f} img/s")


def interrupted_where(state: TrainingState) -> str:
    """"after 10 full epochs and 73 steps of epoch 11", for the Ctrl-C message."""
    full = f"{epochs_text(state.epoch).replace('epoch', 'full epoch')}"
    if not state.step_in_epoch:
        return f"after {full}"
    steps = f"{state.step_in_epoch} step{'s' if state.step_in_epoch != 1 else ''} of epoch {state.epoch + 1}"
    return f"after {full} and {steps}" if state.epoch else f"after {steps}"


def epochs_text(count: int) -> str:
    """"1 epoch", "3 epochs"."""
    return f"{count} epoch" if count == 1 else f"{count} epochs"
