"""Turn a user's own picture of a digit (PNG or JPEG, any size, colour or grey) into an MNIST-style input.

MNIST digits were made like this, and `mnist_style` repeats it:
  grey levels, light ink on a dark (zero) background, so a light background is inverted;
  crop to the ink's bounding box; scale the longer side to 20 pixels keeping the aspect ratio (anti-aliased);
  paste into a 28x28 field so that the centre of mass of the ink lands at (14, 14).

    digit = load_digit("my_seven.png")        # (28, 28) float32 in [0, 1]; DigitImageError names the file
    digit = mnist_style(pil_image)            # the same from a PIL image already open

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

__all__ = ["DigitImageError", "FIELD_SIZE", "DIGIT_SIZE", "MAX_PIXELS", "WORKING_SIDE", "load_digit", "mnist_style",
           "to_grey"]

FIELD_SIZE = 28  # the MNIST image
DIGIT_SIZE = 20  # the box the digit's longer side is scaled to
CENTRE = 14.0  # where the centre of mass goes, in pixel coordinates (row, column)
INK_THRESHOLD = 0.2  # after normalising to [0, 1]: fainter pixels are background noise, not ink
MIN_CONTRAST = 0.08  # an image whose ink differs less than this from its background counts as blank
# A 48-megapixel photo still reads (about 200 MB decoded); a larger picture is refused before it is decoded.
MAX_PIXELS = 50_000_000
WORKING_SIDE = 1024  # the longer side a picture is shrunk to before it becomes floats: a digit needs far less
BLANK = "the image is blank (no digit stands out from the background); use a picture of one digit"


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


def mnist_style(image) -> numpy.ndarray:
    """A PIL image -> (28, 28) float32 in [0, 1], light digit on black, centred by mass at (14, 14).

    Raises DigitImageError when no ink stands out from the background.
    """
    Image, ImageOps = _pil()
    if max(image.size) > WORKING_SIDE:  # a box filter keeps the ink; the digit ends up 20 pixels tall anyway
        scale = WORKING_SIDE / max(image.size)
        image = image.resize(tuple(max(1, round(side * scale)) for side in image.size), Image.Resampling.BOX)
    image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    ink = _ink(to_grey(image))
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


def load_digit(path) -> numpy.ndarray:
    """Read an image file and return it MNIST-style: (28, 28) float32 in [0, 1].

    Raises DigitImageError, naming the file, when it is missing, not an image, or blank.
    """
    Image, _ = _pil()
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
                return mnist_style(image)
    except Image.DecompressionBombError as error:  # Pillow's own bound, above MAX_PIXELS, refuses it on opening
        declared = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(declared.group(1)):,} pixels" if declared else "its size"
        raise DigitImageError(f"{path}: {_too_many_pixels(size)}.") from None
    except DigitImageError as error:
        raise DigitImageError(f"{path}: {error}.") from None
    except FileNotFoundError:
        raise DigitImageError(f"{path}: no such file.") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        reason = first_line(error)
        raise DigitImageError(f"{path}: cannot read it as an image ({reason}); use a PNG or JPEG file.") from None


def _too_many_pixels(size: str) -> str:
    return (f"{size} is more than the {MAX_PIXELS // 10**6} million pixels a picture may have here; scale it down "
            "(a digit needs a few hundred pixels across)")
