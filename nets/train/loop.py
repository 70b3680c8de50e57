"""The training loop: epochs of shuffled minibatches, per-epoch evaluation, checkpoints, Ctrl-C and NaN handling.

The loop drives an *engine* (nets/train/engine.py for the hand-written nets, nets/baseline/engine.py for the PyTorch
baseline), so both implementations share the same data order, schedule, metrics and checkpoints.
Data lives on the device for the whole run; inside a step nothing crosses between host and device.
The running loss and accuracy are read back only every few steps (for the progress bar and the NaN check).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import numpy

from nets.errors import NetsError

from nets.data.augment import Augmentation, PixelMover
from nets.data.batches import EpochOrder
from nets.data.datasets import to_labels, to_model_input
from nets.nn.inference import count_correct
from nets.optim.schedules import learning_rate
from nets.train.interrupt import InterruptFlag, Interrupted
from nets.train.settings import Hyperparameters

__all__ = ["DeviceData", "Diverged", "TrainingState", "epochs_text", "fit", "format_epoch", "interrupted_where"]
EXIT_DIVERGED = 3


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
    def move(cls, io, data, input_shape, dtype: str) -> "DeviceData":
        """data: a nets.data.datasets.Dataset; io: the engine's array I/O; input_shape: one example of the model."""
        def images(raw):
            return io.asarray(to_model_input(raw, input_shape, dtype))

        def labels(raw):
            return io.asarray(to_labels(raw))

        return cls(images(data.train_images), labels(data.train_labels), images(data.test_images),
                   labels(data.test_labels), image_width=data.image_shape[1], dtype=numpy.dtype(dtype).name)


def fit(engine, data, hyper: Hyperparameters, rng: numpy.random.Generator, *, state: TrainingState | None = None,
        on_epoch_end=None, progress=None, log=print, stop_after_steps: int | None = None,
        interrupt: InterruptFlag | None = None, graph: str = "auto") -> TrainingState:
    """Train `engine` (nets/train/engine.py's Engine) on `data` (a DeviceData) for hyper.epochs epochs, starting
    from `state`.

    on_epoch_end(state): called after each epoch's metrics are in state.history (checkpoints go there).
    progress(total, description): returns a progress bar (tqdm-like) or None for no bar.
    stop_after_steps: act as if Ctrl-C came after this many steps of this call (for tests of resume).
    interrupt: an InterruptFlag already entered by the caller (who then holds Ctrl-C while it saves); by default
        fit holds Ctrl-C itself while it runs.
    graph: "auto", "on" or "off": whether the full-batch step is captured as a CUDA graph (engine.graphed).
    Raises Interrupted (Ctrl-C, after a completed step) and Diverged (NaN/inf loss).
    """
    state = state or TrainingState()
    train_count = len(data.train_labels)
    io = engine.io
    augmentation = Augmentation.parse(hyper.augment)  # "auto" is resolved per dataset before fit (nets.train.run)
    mover = None
    if augmentation.active:
        pixels = math.prod(data.train_images.shape[1:])
        mover = PixelMover(io, augmentation.tables((pixels // data.image_width, data.image_width)), data.dtype)
    order = EpochOrder(io, train_count, hyper.batch_size)
    steps_per_epoch = len(order)
    total_steps = steps_per_epoch * hyper.epochs
    refresh_every = max(1, min(50, steps_per_epoch // 20))
    steps_this_call = 0
    bar = None

    def tell(line):  # a line for the user, above the progress bar when there is one
        if log is not None:
            (bar.write if bar is not None and hasattr(bar, "write") else log)(line)

    images, labels = data.train_images, data.train_labels

    def full_batch():  # everything on the device: the rows at the order's counter, the lr at the optimizer's
        engine.train_step(*engine.batch(images, labels, order.next_rows(), mover))

    graphed = engine.graphed(full_batch, graph, note=tell)  # None: each step runs eagerly, right here

    def stop_requested():
        return interrupt.requested or (stop_after_steps is not None and steps_this_call >= stop_after_steps)

    with contextlib.nullcontext(interrupt) if interrupt else InterruptFlag() as interrupt, \
            graphed.on_stream() if graphed is not None else contextlib.nullcontext():
        while state.epoch < hyper.epochs:
            done = state.step_in_epoch * hyper.batch_size if state.images_in_epoch is None else state.images_in_epoch
            if done > 0:  # resuming mid-epoch: redraw that epoch's order and moves
                rng.bit_generator.state = state.epoch_rng_state
            else:
                state.epoch_rng_state = rng.bit_generator.state
            order.start(rng.permutation(train_count), start_image=done)  # the epoch's order, drawn now
            if mover is not None:  # each image's move, from the same host RNG, to the device in one copy
                mover.epoch(augmentation.draw(rng, train_count))

            bar = progress(steps_per_epoch, f"epoch {state.epoch + 1}/{hyper.epochs}") if progress else None
            if bar is not None and state.step_in_epoch:
                bar.update(state.step_in_epoch)
            # the learning rate of each of the epoch's steps goes to the device in one copy
            first = state.epoch * steps_per_epoch
            end = state.step_in_epoch + -(-(train_count - done) // hyper.batch_size)  # the epoch's last step + 1
            engine.plan([learning_rate(hyper.schedule, hyper.lr, first + step, total_steps)
                         for step in range(state.step_in_epoch, end)], capacity=steps_per_epoch)
            engine.reset_totals()
            on_the_grid = done % hyper.batch_size == 0  # else resumed with another batch size: this epoch eagerly
            seen = 0
            started = time.perf_counter()
            for step in range(state.step_in_epoch, end):
                image = done + seen
                full = on_the_grid and image + hyper.batch_size <= train_count
                if full and graphed is not None:
                    graphed()  # full_batch, replayed as a CUDA graph once captured
                    seen += hyper.batch_size
                else:  # eager: a full batch's rows at the order's device counter, as a graph reads them; the partial
                    # last batch (its size would need a graph of its own) or one off the batch grid: a view of the order
                    rows = order.next_rows() if full else order.rows_from(image)
                    engine.train_step(*engine.batch(images, labels, rows, mover))
                    seen += len(rows)
                state.step_in_epoch, state.images_in_epoch = step + 1, done + seen
                steps_this_call += 1

                last_step = step + 1 == end
                stopping = stop_requested() and not last_step  # at an epoch's end, finish the epoch first
                if last_step or stopping or (step + 1) % refresh_every == 0:
                    loss_sum, hits = engine.totals()  # the only read-back: every few steps
                    mean_loss = loss_sum / seen
                    _check_finite(mean_loss, state)
                    if bar is not None:
                        elapsed = time.perf_counter() - started
                        bar.set_postfix_str(f"loss {mean_loss:.4f} acc {hits / seen:.2%} "
                                            f"{seen / max(elapsed, 1e-9):,.0f} img/s", refresh=False)
                        bar.update(step + 1 - bar.n)
                if stopping:
                    if bar is not None:
                        bar.close()
                    raise Interrupted(state)
            io.synchronize()
            train_seconds = time.perf_counter() - started
            if bar is not None:
                bar.close()
                bar = None

            test_correct = count_correct(engine, data.test_images, data.test_labels)
            record = {
                "epoch": state.epoch + 1,
                "train_loss": mean_loss,
                "train_accuracy": hits / seen,
                "test_accuracy": test_correct / len(data.test_labels),
                "seconds": train_seconds,
                "images_per_second": seen / max(train_seconds, 1e-9),
                "lr_end": learning_rate(hyper.schedule, hyper.lr, (state.epoch + 1) * steps_per_epoch - 1, total_steps),
            }
            if seen != train_count:  # resumed mid-epoch: the loss and accuracy cover the steps run here
                record["partial_epoch_images"] = seen
            state.history.append(record)
            state.epoch += 1
            state.step_in_epoch, state.images_in_epoch = 0, None
            state.epoch_rng_state = rng.bit_generator.state
            if on_epoch_end is not None:
                on_epoch_end(state)
            if log is not None:
                log(format_epoch(record, hyper.epochs))
            if stop_requested() and state.epoch < hyper.epochs:
                raise Interrupted(state)
    return state


def _check_finite(mean_loss: float, state: TrainingState) -> None:
    if not math.isfinite(mean_loss):
        raise Diverged(
            f"the loss became {mean_loss} in epoch {state.epoch + 1} (by step {state.step_in_epoch}); "
            "training stopped. Try a smaller --lr."
        )


def format_epoch(record: dict, epochs: int) -> str:
    """One line per epoch: loss, train and test accuracy, seconds and images per second."""
    width = len(str(epochs))
    return (f"epoch {record['epoch']:>{width}}/{epochs}  loss {record['train_loss']:.4f}  "
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
