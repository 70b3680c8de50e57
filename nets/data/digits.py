"""Turn a user's own picture (PNG or JPEG, any size, colour or grey) into a model's 28x28 input, prepared as the
pictures of the model's dataset were.

MNIST's digits were made like this, and `mnist_style` ("digits") repeats it:
  grey levels, light ink on a dark (zero) background, so a light background is inverted;
  crop to the ink's bounding box; scale the longer side to 20 pixels keeping the aspect ratio (anti-aliased);
  paste into a 28x28 field so that the centre of mass of the ink lands at (14, 14).
Fashion-MNIST's clothes were made from product photos like this, and `fashion_style` ("clothes") repeats it:
  grey levels, the light background made black; crop to the item; scale the longer side to the whole 28 pixels
  keeping the aspect ratio; pad the shorter side evenly (the odd pixel before), with no centring by mass.
"none" takes the grey levels as they are, resized to 28x28 when the picture has another size.

    picture = load_picture("boot.jpg", "clothes")   # (28, 28) float32 in [0, 1]; DigitImageError names the file
    digit = load_digit("my_seven.png")              # the same as load_picture(path, "digits")
    digit = mnist_style(pil_image)                  # from a PIL image already open; fashion_style likewise
    preparation_for("fashion-mnist")                # "clothes": how a dataset's pictures were prepared

A picture costs little memory whatever its size: its pixel count is read from the file's header and checked
before anything is decoded (at most MAX_PIXELS; a JPEG is decoded at 1/2 to 1/8 scale when that still gives
WORKING_SIDE pixels), and it is shrunk to WORKING_SIDE pixels on its longer side before it becomes floats.
Pillow is imported lazily, so the rest of the package works without it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy

from nets.commands import install_hint
from nets.errors import NetsError, first_line

__all__ = ["DigitImageError", "FIELD_SIZE", "DIGIT_SIZE", "MAX_PIXELS", "PREPARATIONS", "WORKING_SIDE", "as_it_is",
           "fashion_style", "load_digit", "load_picture", "mnist_style", "prepare", "preparation_for", "to_grey"]

FIELD_SIZE = 28  # the MNIST image
DIGIT_SIZE = 20  # the box the digit's longer side is scaled to
CENTRE = 14.0  # where the centre of mass goes, in pixel coordinates (row, column)
INK_THRESHOLD = 0.2  # after normalising to [0, 1]: fainter pixels are background noise, not ink
MIN_CONTRAST = 0.08  # an image whose ink differs less than this from its background counts as blank
# A 48-megapixel photo still reads (about 200 MB decoded); a larger picture is refused before it is decoded.
MAX_PIXELS = 50_000_000
WORKING_SIDE = 1024  # the longer side a picture is shrunk to before it becomes floats: a digit needs far less
CLOTHES_THRESHOLD = 0.05  # the item's faint edges count: Fashion-MNIST's items reach the frame with them
BLANK = "the image is blank (nothing stands out from the background); use a picture of one digit or garment"
# What each preparation does to a picture, as predict.py says it.
PREPARATIONS = {
    "digits": "prepared as MNIST's digits were: cropped to the ink, scaled into a 20x20 box, centred by mass, "
              "light on black",
    "clothes": "prepared as Fashion-MNIST's clothes were: the item fitted to the 28x28 frame, aspect kept, light on "
               "black",
    "none": "taken as they are: their grey levels, resized to 28x28 if need be, never inverted",
}


class DigitImageError(NetsError, ValueError):
    """An image cannot be turned into a digit (unreadable, or blank); the message names the file."""


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DigitImageError(f"Pillow is not installed; install it with `{install_hint('plot')}`.") from None
    return Image, ImageOps


def to_grey(image) -> numpy.ndarray:
    """A PIL image of any mode -> (H, W) float32 grey levels in [0, 1] (0 black, 1 white).

    Transparent pixels are laid on a background that contrasts with the opaque ones, so a dark digit
    drawn on a transparent canvas reads as dark-on-light and a light one as light-on-dark.
    """
    Image, _ = _pil()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = numpy.asarray(image, dtype=numpy.float64)
        if not numpy.isfinite(values).all():
            raise DigitImageError("the image holds NaN or infinite pixel values (a float image); save it with "
                                  "finite values, or as an 8-bit PNG or JPEG")
        top = values.max() if values.size else 1.0
        return (values / (top if top > 1.0 else 1.0)).astype(numpy.float32)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return numpy.asarray(image.convert("L"), dtype=numpy.float32) / 255.0
    rgba = numpy.asarray(image.convert("RGBA"), dtype=numpy.float32) / 255.0
    alpha = rgba[..., 3]
    grey = rgba[..., :3] @ numpy.array([0.299, 0.587, 0.114], dtype=numpy.float32)  # as PIL's "L"
    opaque = alpha > 0.5
    ink_is_dark = grey[opaque].mean() < 0.5 if opaque.any() else True
    background = 1.0 if ink_is_dark else 0.0
    return alpha * grey + (1.0 - alpha) * background


def _border(values: numpy.ndarray) -> numpy.ndarray:
    """The outermost ring of pixels (a few percent of the size, at least one pixel): where the background is."""
    height, width = values.shape
    band = max(1, min(height, width) // 20)
    return numpy.concatenate([
        values[:band].ravel(), values[-band:].ravel(), values[:, :band].ravel(), values[:, -band:].ravel(),
    ])


def _ink(grey: numpy.ndarray) -> numpy.ndarray:
    """Grey levels -> ink intensity in [0, 1]: background 0, strongest ink 1 (inverted when the background is light)."""
    values = grey.astype(numpy.float64)
    if numpy.median(_border(values)) > 0.5:
        values = 1.0 - values
    background = numpy.median(_border(values))
    contrast = values.max() - background
    if contrast < MIN_CONTRAST:
        raise DigitImageError(BLANK)
    return numpy.clip((values - background) / contrast, 0.0, 1.0)


def _ink_of(image) -> numpy.ndarray:
    """A PIL image -> its ink (nets.data.digits._ink), shrunk to WORKING_SIDE first and turned upright."""
    Image, ImageOps = _pil()
    if max(image.size) > WORKING_SIDE:  # a box filter keeps the ink; the result is 28 pixels across anyway
        scale = WORKING_SIDE / max(image.size)
        image = image.resize(tuple(max(1, round(side * scale)) for side in image.size), Image.Resampling.BOX)
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    return _ink(to_grey(image))


def mnist_style(image) -> numpy.ndarray:
    """A PIL image -> (28, 28) float32 in [0, 1], light digit on black, centred by mass at (14, 14).

    Raises DigitImageError when no ink stands out from the background.
    """
    Image, _ = _pil()
    ink = _ink_of(image)
    rows = numpy.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    columns = numpy.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    if not rows.size:
        raise DigitImageError(BLANK)
    cropped = ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].astype(numpy.float32)

    height, width = cropped.shape
    scale = DIGIT_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL sizes are (width, height)
    resized = Image.fromarray(cropped).resize(size, Image.Resampling.LANCZOS)
    digit = numpy.clip(numpy.asarray(resized, dtype=numpy.float32), 0.0, 1.0)  # Lanczos rings a little

    mass = digit.sum()
    if mass <= 0:
        raise DigitImageError(BLANK)
    row_centre = (digit.sum(axis=1) * numpy.arange(digit.shape[0])).sum() / mass
    column_centre = (digit.sum(axis=0) * numpy.arange(digit.shape[1])).sum() / mass
    # Shift so the centre of mass lands at (14, 14), but never push ink out of the field.
    top = int(numpy.clip(round(CENTRE - row_centre), 0, FIELD_SIZE - digit.shape[0]))
    left = int(numpy.clip(round(CENTRE - column_centre), 0, FIELD_SIZE - digit.shape[1]))
    field = numpy.zeros((FIELD_SIZE, FIELD_SIZE), dtype=numpy.float32)
    field[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return field


def fashion_style(image) -> numpy.ndarray:
    """A PIL image -> (28, 28) float32 in [0, 1], the item light on black, its longer side the whole 28 pixels,
    centred by its bounding box as Fashion-MNIST's are (an odd leftover pixel goes before the item).

    Raises DigitImageError when nothing stands out from the background.
    """
    Image, _ = _pil()
    ink = _ink_of(image)
    rows = numpy.flatnonzero((ink > CLOTHES_THRESHOLD).any(axis=1))
    columns = numpy.flatnonzero((ink > CLOTHES_THRESHOLD).any(axis=0))
    if not rows.size:
        raise DigitImageError(BLANK)
    cropped = ink[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1].astype(numpy.float32)
    height, width = cropped.shape
    scale = FIELD_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Shrinking averages the pixels each output pixel covers (exact for a picture scaled up by a whole factor);
    # enlarging interpolates.
    resample = Image.Resampling.BOX if scale <= 1 else Image.Resampling.BICUBIC
    item = numpy.clip(numpy.asarray(Image.fromarray(cropped).resize(size, resample), dtype=numpy.float32), 0.0, 1.0)
    top, left = (FIELD_SIZE + 1 - item.shape[0]) // 2, (FIELD_SIZE + 1 - item.shape[1]) // 2
    field = numpy.zeros((FIELD_SIZE, FIELD_SIZE), dtype=numpy.float32)
    field[top:top + item.shape[0], left:left + item.shape[1]] = item
    return field


def as_it_is(image) -> numpy.ndarray:
    """A PIL image -> (28, 28) float32 in [0, 1]: its grey levels unchanged (not inverted, not cropped), resized to
    28x28 only when it is another size (for a picture already prepared as the model's inputs are)."""
    Image, ImageOps = _pil()
    grey = to_grey(ImageOps.exif_transpose(image))
    if grey.shape != (FIELD_SIZE, FIELD_SIZE):
        resample = Image.Resampling.BOX if min(grey.shape) >= FIELD_SIZE else Image.Resampling.BICUBIC
        grey = numpy.asarray(Image.fromarray(grey).resize((FIELD_SIZE, FIELD_SIZE), resample), dtype=numpy.float32)
    return numpy.clip(grey, 0.0, 1.0).astype(numpy.float32, copy=False)


STYLES = {"digits": mnist_style, "clothes": fashion_style, "none": as_it_is}


def preparation_for(dataset: str | None) -> str:
    """How the pictures of `dataset` were prepared: "clothes" for Fashion-MNIST, "digits" for MNIST (and for a
    model that does not say its dataset)."""
    return "clothes" if dataset == "fashion-mnist" else "digits"


def prepare(image, preparation: str = "digits") -> numpy.ndarray:
    """A PIL image -> (28, 28) float32 in [0, 1], prepared as PREPARATIONS[preparation] says."""
    if preparation not in STYLES:
        raise ValueError(f"unknown preparation {preparation!r}; choose one of {', '.join(STYLES)}")
    return STYLES[preparation](image)


def load_digit(path) -> numpy.ndarray:
    """Read an image file and return it MNIST-style: (28, 28) float32 in [0, 1] (load_picture(path, "digits"))."""
    return load_picture(path, "digits")


def load_picture(path, preparation: str = "digits") -> numpy.ndarray:
    """Read an image file and return it prepared as `preparation` says: (28, 28) float32 in [0, 1].

    Raises DigitImageError, naming the file, when it is missing, unreadable, not an image, or blank.
    """
    Image, _ = _pil()
    if preparation not in STYLES:
        raise ValueError(f"unknown preparation {preparation!r}; choose one of {', '.join(STYLES)}")
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise DigitImageError(f"{path}: not a regular file; use a PNG or JPEG file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS is the bound here
            with Image.open(path) as image:  # reads the header only
                image.draft(None, (WORKING_SIDE, WORKING_SIDE))  # a JPEG decodes at a reduced scale; others ignore it
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise DigitImageError(_too_many_pixels(f"{width}x{height} pixels"))
                image.load()
                return prepare(image, preparation)
    except Image.DecompressionBombError as error:  # Pillow's own bound, above MAX_PIXELS, refuses it on opening
        declared = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(declared.group(1)):,} pixels" if declared else "its size"
        raise DigitImageError(f"{path}: {_too_many_pixels(size)}.") from None
    except DigitImageError as error:
        raise DigitImageError(f"{path}: {error}.") from None
    except FileNotFoundError:
        raise DigitImageError(f"{path}: no such file.") from None
    except PermissionError as error:
        raise DigitImageError(f"{path} cannot be read ({error.strerror or error}); check its permissions.") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        reason = first_line(error)
        raise DigitImageError(f"{path}: cannot read it as an image ({reason}); use a PNG or JPEG file.") from None


def _too_many_pixels(size: str) -> str:
    return (f"{size} is more than the {MAX_PIXELS // 10**6} million pixels a picture may have here; scale it down "
            "(a digit needs a few hundred pixels across)")
