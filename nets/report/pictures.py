"""A user's pictures through predict.py: how they are prepared for a model (as its training pictures were, unless
--prepare says otherwise), and what --show writes: each prepared 28x28 beside its answer.

    how, line, warning = choose_preparation(known="fashion-mnist", asked=None, named=None)
    # "clothes", "pictures: prepared as Fashion-MNIST's clothes were: ... (the model learned from Fashion-MNIST)", None
    write_shown(path, picture, ["Ankle boot 97.1%", "Sneaker 2.0%"])   # a PNG: the 28x28 enlarged, the answer

Pillow is imported lazily (the `plot` extra), as nets/data/digits.py does.
"""

from __future__ import annotations

from pathlib import Path

import numpy

from nets.data.datasets import TITLES
from nets.data.digits import FIELD_SIZE, PREPARATIONS, DigitImageError, preparation_for

__all__ = ["SHOWN_SCALE", "choose_preparation", "shown_name", "write_shown"]

SHOWN_SCALE = 8  # each of the 28x28 pixels drawn as an 8x8 square: 224x224, large enough to see, exact to read
WORDS = {"digits": "digits", "clothes": "clothes"}


def choose_preparation(known: str | None, asked: str | None, named: str | None) -> tuple[str, str, str | None]:
    """How to prepare the pictures for a model: -> (preparation, the line that says so, a warning line or None).

    known: the dataset the checkpoint says it was trained on; asked: --prepare; named: --dataset, which names the
    classes of a checkpoint that does not say its dataset (and so says what its pictures were).
    """
    dataset = known or named
    how = asked or preparation_for(dataset)
    if asked is not None:
        why = f"as --prepare {asked} says"
    elif known is not None:
        why = f"the model learned from {TITLES[known]}"
    elif named is not None:
        why = f"--dataset {named} names its classes"
    else:
        why = "the checkpoint does not say its dataset; --prepare clothes for garments"
    warning = None
    learned = preparation_for(dataset) if dataset is not None else None
    if asked in WORDS and learned is not None and asked != learned:
        warning = (f"warning: this model learned from {TITLES[dataset]}'s {WORDS[learned]}, so pictures prepared as "
                   f"{WORDS[asked]} are unlike those it was trained on; leave out --prepare to prepare them as its "
                   "training pictures were.")
    return how, f"pictures: {PREPARATIONS[how]} ({why})", warning


def shown_name(picture_path, taken: set) -> str:
    """The file name --show gives a picture's PNG: NAME-as-seen.png after the picture's NAME, numbered when two
    pictures share a name (a/x.png, b/x.png -> x-as-seen.png, x-as-seen-2.png); `taken` collects the names."""
    stem = Path(picture_path).stem or "picture"
    name, number = f"{stem}-as-seen.png", 1
    while name in taken:
        number += 1
        name = f"{stem}-as-seen-{number}.png"
    taken.add(name)
    return name


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType (Pillow 10.1 and later)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def write_shown(path, picture: numpy.ndarray, answer: list[str]) -> Path:
    """A PNG of `picture` ((28, 28) floats in [0, 1], as the model takes it: light on black), each pixel an
    SHOWN_SCALE square, beside the lines of `answer`; DigitImageError naming the path when it cannot be written."""
    from PIL import Image, ImageDraw

    side = FIELD_SIZE * SHOWN_SCALE
    pixels = numpy.clip(numpy.rint(numpy.asarray(picture, dtype=numpy.float64) * 255), 0, 255).astype(numpy.uint8)
    enlarged = Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST)
    font = _font(16)
    width = side + 24 + max((int(ImageDraw.Draw(enlarged).textlength(line, font=font)) for line in answer), default=0)
    canvas = Image.new("L", (width + 12, side), 255)
    canvas.paste(enlarged, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(answer):
        draw.text((side + 16, 12 + 24 * index), line, fill=0, font=font)
    try:
        canvas.save(path, format="PNG")
    except OSError as error:
        raise DigitImageError(f"--show: cannot write {path} ({error.strerror or error}); choose another "
                              "folder.") from None
    return Path(path)

