"""A digits-like dataset for tests, drawn here (MNIST itself cannot be downloaded everywhere the tests run).

    images, labels = digit_set(3000, seed=0)   # (N, 28, 28) uint8 prepared as MNIST's digits are, labels 0-9

Each digit is a handful of pen strokes (a stroke font of polylines, one per digit), drawn with a random slant,
size, aspect, stroke width and wobble of every point on a canvas of a random size, then prepared exactly as
predict.py prepares a digit (nets.data.digits.mnist_style: cropped to the ink, scaled into 20x20, centred by mass)
and stored as 8-bit grey levels, as MNIST's files hold them.
"""

from __future__ import annotations

import math

import numpy

__all__ = ["digit_set", "draw_digit"]


def _circle(cx, cy, rx, ry, start=0.0, end=360.0, points=24):
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in numpy.linspace(start, end, points)]


# Each digit: strokes of (x, y) points in a unit box (x right, y down).
STROKES = {
    0: [_circle(0.5, 0.5, 0.32, 0.48)],
    1: [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.15, 0.25), (0.3, 0.05), (0.6, 0.0), (0.85, 0.2), (0.8, 0.45), (0.15, 1.0), (0.9, 1.0)]],
    3: [[(0.15, 0.1), (0.5, 0.0), (0.8, 0.15), (0.75, 0.4), (0.45, 0.5), (0.8, 0.6), (0.85, 0.85), (0.5, 1.0),
         (0.15, 0.9)]],
    4: [[(0.65, 1.0), (0.65, 0.0), (0.1, 0.7), (0.9, 0.7)]],
    5: [[(0.85, 0.0), (0.25, 0.0), (0.2, 0.45), (0.55, 0.4), (0.85, 0.6), (0.8, 0.9), (0.45, 1.0), (0.15, 0.9)]],
    6: [[(0.75, 0.05), (0.45, 0.0), (0.2, 0.3), (0.15, 0.7), (0.35, 1.0), (0.7, 0.95), (0.8, 0.7), (0.6, 0.5),
         (0.3, 0.55), (0.17, 0.7)]],
    7: [[(0.1, 0.0), (0.9, 0.0), (0.4, 1.0)]],
    8: [_circle(0.5, 0.24, 0.24, 0.24), _circle(0.5, 0.72, 0.3, 0.28)],
    9: [_circle(0.5, 0.3, 0.28, 0.3), [(0.78, 0.3), (0.7, 1.0)]],
}


def draw_digit(label: int, rng):
    """A PIL picture (grey, dark ink on white) of `label` written with random proportions and wobble."""
    from PIL import Image, ImageDraw

    side = int(rng.integers(48, 96))
    image = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(image)
    height = side * rng.uniform(0.55, 0.8)
    width = height * rng.uniform(0.5, 0.8)
    slant = rng.uniform(-0.3, 0.3)
    left, top = rng.uniform(0.1, 0.9) * (side - width), rng.uniform(0.1, 0.9) * (side - height)
    pen = max(2, int(round(side * rng.uniform(0.06, 0.13))))
    for stroke in STROKES[label]:
        points = []
        for x, y in stroke:
            x, y = x + rng.normal(0, 0.03), y + rng.normal(0, 0.03)
            points.append((left + width * x + slant * height * (0.5 - y), top + height * y))
        draw.line(points, fill=0, width=pen, joint="curve")
    return image


def digit_set(count: int, seed: int = 0) -> tuple[numpy.ndarray, numpy.ndarray]:
    """`count` digits prepared as MNIST's are: ((count, 28, 28) uint8, light on black; (count,) uint8 labels),
    the ten digits in turn."""
    from nets.data.digits import mnist_style

    rng = numpy.random.default_rng(seed)
    labels = (numpy.arange(count) % 10).astype(numpy.uint8)
    images = numpy.stack([mnist_style(draw_digit(int(label), rng)) for label in labels])
    return numpy.rint(images * 255).astype(numpy.uint8), labels
