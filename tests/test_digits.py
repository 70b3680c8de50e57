"""nets.data.digits: a user's picture -> MNIST-style 28x28 input (inverted, cropped, 20 px, centred by mass)."""

import io

import numpy
import pytest

from crafted_files import MEMORY_BOUND, peak_of, png_of_zeros
from nets.data.digits import MAX_PIXELS, DigitImageError, load_digit, mnist_style

Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed; pip install -e .[plot]")
ImageDraw = pytest.importorskip("PIL.ImageDraw")


def draw_seven(size=(200, 300), background="white", ink="black", mode="RGB"):
    """A "7" of thick strokes, off-centre, on a plain background."""
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    draw.line([(40, 40), (150, 50), (80, 260)], fill=ink, width=18)
    return image


def centre_of_mass(digit):
    mass = digit.sum()
    rows = (digit.sum(axis=1) * numpy.arange(digit.shape[0])).sum() / mass
    columns = (digit.sum(axis=0) * numpy.arange(digit.shape[1])).sum() / mass
    return rows, columns


def ink_box(digit, threshold=0.0):
    rows = numpy.flatnonzero((digit > threshold).any(axis=1))
    columns = numpy.flatnonzero((digit > threshold).any(axis=0))
    return rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1


def check_mnist_style(digit):
    assert digit.shape == (28, 28)
    assert digit.dtype == numpy.float32
    assert digit.min() >= 0.0 and digit.max() <= 1.0
    assert digit.max() > 0.9  # strongest ink is (close to) 1
    height, width = ink_box(digit)
    assert max(height, width) <= 20
    assert max(height, width) >= 19  # the longer side was scaled to 20
    row, column = centre_of_mass(digit)
    assert abs(row - 14) <= 1.0 and abs(column - 14) <= 1.0


def test_light_background_is_inverted_cropped_scaled_and_centred():
    digit = mnist_style(draw_seven())
    check_mnist_style(digit)
    # inverted: the background (corners) is black, the ink bright
    assert digit[0, 0] == 0.0 and digit[-1, -1] == 0.0
    # the stroke is taller than wide (aspect ratio kept): the long side is the height
    height, width = ink_box(digit)
    assert height == 20 and width < height


def test_dark_background_is_not_inverted():
    light_on_dark = mnist_style(draw_seven(background="black", ink="white"))
    dark_on_light = mnist_style(draw_seven(background="white", ink="black"))
    check_mnist_style(light_on_dark)
    numpy.testing.assert_allclose(light_on_dark, dark_on_light, atol=1e-5)


def test_grey_and_coloured_inputs():
    check_mnist_style(mnist_style(draw_seven(mode="L", background=230, ink=20)))
    check_mnist_style(mnist_style(draw_seven(background=(250, 240, 200), ink=(20, 20, 120))))


def test_rgba_with_transparent_background():
    dark_ink = draw_seven(mode="RGBA", background=(0, 0, 0, 0), ink=(0, 0, 0, 255))
    check_mnist_style(mnist_style(dark_ink))
    light_ink = draw_seven(mode="RGBA", background=(255, 255, 255, 0), ink=(255, 255, 255, 255))
    numpy.testing.assert_allclose(mnist_style(light_ink), mnist_style(dark_ink), atol=1e-5)


def test_small_digit_is_scaled_up():
    image = Image.new("L", (12, 10), 255)
    ImageDraw.Draw(image).rectangle([3, 2, 7, 8], fill=0)
    digit = mnist_style(image)
    assert ink_box(digit, threshold=0.5)[0] == 20


def test_png_and_jpeg_files(tmp_path):
    png = tmp_path / "seven.png"
    draw_seven(mode="RGBA", background=(255, 255, 255, 255), ink=(0, 0, 0, 255)).save(png)
    jpeg = tmp_path / "seven.jpg"
    draw_seven().save(jpeg, quality=80)
    from_png, from_jpeg = load_digit(png), load_digit(jpeg)
    check_mnist_style(from_png)
    check_mnist_style(from_jpeg)
    assert numpy.abs(from_png - from_jpeg).mean() < 0.05  # compression noise does not change the picture


@pytest.mark.parametrize("colour", ["white", "black", (128, 128, 128)])
def test_blank_image_is_an_error_naming_the_file(tmp_path, colour):
    path = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), colour).save(path)
    with pytest.raises(DigitImageError, match="blank.png: the image is blank") as caught:
        load_digit(path)
    assert "\n" not in str(caught.value)


def test_file_that_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with pytest.raises(DigitImageError, match="notes.png: cannot read it as an image") as caught:
        load_digit(path)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(DigitImageError, match="nothere.png: no such file"):
        load_digit(tmp_path / "nothere.png")


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    draw_seven().save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:200])
    with pytest.raises(DigitImageError, match="cut.jpg"):
        load_digit(path)


# ------------------------------------------------------------------------------------------ big pictures, little memory


@pytest.mark.parametrize("side, channels", [(10_000, 1), (13_000, 3), (14_000, 1)])
def test_a_picture_of_too_many_pixels_is_refused_before_it_is_decoded(tmp_path, side, channels):
    """A PNG of about 100 KiB declaring 100 million pixels or more: refused from its header (14000x14000 is above
    Pillow's own bound, which refuses it on opening), at a few MB, where decoding it cost gigabytes."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_of_zeros(side, side, channels))

    def load():
        with pytest.raises(DigitImageError) as caught:
            load_digit(path)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{path}: ")
        assert f"{side * side:,} pixels" in message or f"{side}x{side} pixels" in message
        assert f"is more than the {MAX_PIXELS // 10**6} million pixels a picture may have here" in message

    assert peak_of(load) < MEMORY_BOUND


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_large_picture_is_shrunk_before_it_becomes_floats(tmp_path, suffix):
    """A 6-megapixel photo of a seven reads as the same digit as a small one, without gigabytes of floats."""
    path = tmp_path / f"big{suffix}"
    big = draw_seven().resize((2000, 3000), Image.Resampling.NEAREST)
    big.save(path)
    digit = load_digit(path)
    check_mnist_style(digit)
    small = mnist_style(draw_seven())
    assert numpy.abs(digit - small).mean() < 0.05
    assert peak_of(lambda: load_digit(path)) < MEMORY_BOUND


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_float_picture_holding_nan_or_infinity_is_one_line(tmp_path, bad):
    values = numpy.zeros((40, 40), dtype=numpy.float32)
    values[10:30, 18:22] = 1.0
    values[0, 0] = bad
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(DigitImageError) as caught:
        load_digit(path)
    assert str(caught.value) == (f"{path}: the image holds NaN or infinite pixel values (a float image); save it "
                                 "with finite values, or as an 8-bit PNG or JPEG.")
