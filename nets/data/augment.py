"""Training-time augmentation: left-right flips and small shifts, drawn on the host, applied on the device.

    augmentation = Augmentation.parse("flip+shift:2")      # or "none", "flip", "shift" (= shift:2), "shift:N"
    tables = augmentation.tables((28, 28))                 # (T, 784) int64: one pixel map per flip and shift
    ids = augmentation.draw(rng, count)                    # (count,) int64: each image's map, once per epoch
    moves = ImageMoves(engine.backend, tables, "float32")  # on the device, for either engine
    moves.epoch(ids); moves(pixels, index)                 # move a batch's images (pixels: (n, 784)) in place

Every way an image can be moved is one row of `tables`: entry p says which source pixel lands on pixel p,
and the value `pixels` (one past the last pixel) means "from outside the image": a 0, the background of
MNIST-style images. An epoch draws one row per image from the run's RNG (so resumes stay exact), and the
engine's batch is moved by one gather (ImageMoves, written once in the calls of an engine's `backend`, so the
nets and the PyTorch engine share it). A shift of (dy, dx) moves the picture dy pixels down and dx right; a flip
mirrors it left-right first. Shifts of each axis are drawn uniformly from -N..N, independently (what a random crop
of the image padded by N pixels does).

"auto" is resolved per dataset and model by `resolve`, from the runs in the README: shifts of up to 2 pixels
for digits (both models), flips and 1-pixel shifts for the CNN on clothes, nothing for the MLP on clothes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy

__all__ = ["AUGMENT_CHOICES", "AUTO", "Augmentation", "AugmentError", "DEFAULT_SHIFT", "ImageMoves", "MAX_SHIFT",
           "resolve"]

DEFAULT_SHIFT = 2  # pixels, when "shift" is given without a number
MAX_SHIFT = 8  # beyond this little of a 28x28 digit would stay in the picture
AUGMENT_CHOICES = "none, flip, shift, shift:N, flip+shift[:N], auto"
# What "auto" means, per (dataset, model); see the README's recipe runs.
AUTO = {
    ("mnist", "cnn"): "shift:2",
    ("mnist", "mlp"): "shift:2",
    ("fashion-mnist", "cnn"): "flip+shift:1",
    ("fashion-mnist", "mlp"): "none",
}

_SHIFT = re.compile(r"shift(?::(\d+))?")


class AugmentError(ValueError):
    """An augmentation name that cannot be read; the message lists what can."""


@dataclass(frozen=True)
class Augmentation:
    """flip: mirror a random half of the images left-right; shift: move each by up to this many pixels."""

    flip: bool = False
    shift: int = 0

    @classmethod
    def parse(cls, text: str) -> "Augmentation":
        """"none", "flip", "shift", "shift:N", "flip+shift[:N]" (either order) -> Augmentation; AugmentError
        otherwise ("auto" too: resolve it first)."""
        if not isinstance(text, str):
            raise AugmentError(f"augmentation {text!r} is not a name; choose one of {AUGMENT_CHOICES}.")
        if text == "none":
            return cls()
        shown = repr(text if len(text) <= 40 else text[:30] + f"... ({len(text)} characters)")
        flip, shift = False, None
        for part in text.split("+"):
            match = _SHIFT.fullmatch(part)
            if part == "flip" and not flip:
                flip = True
            elif match and shift is None:
                digits = match.group(1)
                # a number of thousands of digits is no shift (and int() of it would fail on the digit limit)
                shift = DEFAULT_SHIFT if digits is None else int(digits) if len(digits) <= 3 else MAX_SHIFT + 1
                if not 1 <= shift <= MAX_SHIFT:
                    raise AugmentError(f"augmentation {shown}: a shift must be 1 to {MAX_SHIFT} pixels.")
            else:
                raise AugmentError(f"unknown augmentation {shown}; choose one of {AUGMENT_CHOICES}.")
        return cls(flip=flip, shift=shift or 0)

    @property
    def name(self) -> str:
        """The canonical spelling: "none", "flip", "shift:2", "flip+shift:2"."""
        parts = (["flip"] if self.flip else []) + ([f"shift:{self.shift}"] if self.shift else [])
        return "+".join(parts) or "none"

    @property
    def active(self) -> bool:
        return self.flip or self.shift > 0

    def describe(self) -> str:
        """For the run's first line: "left-right flips", "shifts of up to 2 pixels", both, or ""."""
        parts = (["left-right flips"] if self.flip else []) + (
            [f"shifts of up to {self.shift} pixel{'s' if self.shift != 1 else ''}"] if self.shift else [])
        return " and ".join(parts)

    @property
    def count(self) -> int:
        """How many pixel maps (rows of `tables`): 2 flips x (2N+1)^2 shifts, or fewer."""
        return (2 if self.flip else 1) * (2 * self.shift + 1) ** 2

    def tables(self, image_shape) -> numpy.ndarray:
        """(count, rows*cols) int64 pixel maps on the host; entry rows*cols means "outside: 0".

        Row f*(2N+1)^2 + (dy+N)*(2N+1) + (dx+N) flips when f is 1, then shifts by (dy, dx)."""
        rows, cols = (int(size) for size in image_shape)
        pixels = rows * cols
        offsets = numpy.arange(-self.shift, self.shift + 1)
        r, c = numpy.meshgrid(numpy.arange(rows), numpy.arange(cols), indexing="ij")
        maps = []
        for flip in ((False, True) if self.flip else (False,)):
            for dy in offsets:
                for dx in offsets:
                    source_r, source_c = r - dy, c - dx
                    if flip:
                        source_c = cols - 1 - source_c
                    inside = (source_r >= 0) & (source_r < rows) & (source_c >= 0) & (source_c < cols)
                    maps.append(numpy.where(inside, source_r * cols + source_c, pixels).ravel())
        return numpy.stack(maps).astype(numpy.int64)

    def draw(self, rng: numpy.random.Generator, count: int) -> numpy.ndarray:
        """Each of `count` images' pixel map for one epoch -> (count,) int64, from the run's RNG.

        Flips are drawn first (as before shifts existed: a flip-only run draws exactly what it always did),
        then the shifts, (dy, dx) per image."""
        ids = numpy.zeros(count, dtype=numpy.int64)
        if self.flip:
            ids += (rng.random(count) < 0.5) * (2 * self.shift + 1) ** 2
        if self.shift:
            side = 2 * self.shift + 1
            shifts = rng.integers(0, side, size=(count, 2))
            ids += shifts[:, 0] * side + shifts[:, 1]
        return ids


def resolve(augment: str, dataset: str, model: str) -> str:
    """"auto" -> what suits `dataset` and `model` (AUTO); anything else in its canonical spelling."""
    if augment == "auto":
        augment = AUTO.get((dataset, model), "none")
    return Augmentation.parse(augment).name


class ImageMoves:
    """The epoch's move of every training image (its pixel map), applied to a batch in place, on the device.

    backend: the engine's backend (a Backend, or the PyTorch engine's TorchBackend: asarray, take, zeros).
    tables: Augmentation.tables(...), (T, P) int64; dtype: the pixels' dtype name.
    epoch(ids): the epoch's draw, (N,) the map of every training image, to the device in one copy.
    self(pixels, index): pixels (n, P), the batch of images `index` (a device vector) in the step's buffer.
    Five launches, into buffers kept per batch size: the batch's maps, their offsets into a workspace, the pixels
    into that workspace (whose extra column stays 0, the background shifted in), one gather back into pixels.
    """

    def __init__(self, backend, tables, dtype: str):
        self.backend = backend
        self.maps = backend.asarray(numpy.ascontiguousarray(tables, dtype=numpy.int64))
        self.dtype = dtype
        self.ids = None
        self._buffers_by_size = {}  # batch size -> (workspace, row offsets, maps chosen, source pixels)

    def epoch(self, ids) -> None:
        """The epoch's draw: every training image's map, (N,), copied into the same device array each epoch (a
        captured step reads it there)."""
        if self.ids is None or self.ids.shape[0] != len(ids):
            self.ids = self.backend.zeros(len(ids), "int64")
        self.backend.upload(self.ids, ids)

    def __call__(self, pixels, index) -> None:
        backend, count = self.backend, self.maps.shape[1]
        n = pixels.shape[0]
        buffers = self._buffers_by_size.get(n)
        if buffers is None:
            rows = backend.asarray(numpy.arange(n, dtype=numpy.int64)[:, None] * (count + 1))
            buffers = self._buffers_by_size[n] = (backend.zeros((n, count + 1), self.dtype), rows,
                                                  backend.zeros(n, "int64"), backend.zeros((n, count), "int64"))
        work, rows, chosen, source = buffers
        backend.take(self.ids, index, axis=0, out=chosen)
        backend.take(self.maps, chosen, axis=0, out=source)
        source += rows
        work[:, :count] = pixels
        backend.take(work.reshape(-1), source, out=pixels)
