"""The one place a number or a name that a user or a file gives is checked: layers, the model config, the run's
settings, the optimizers, the checkpoint loader and the command line's option types all call these.

    size = whole(value, "Linear in_features")              # an int >= 1; numpy integers too, never a bool
    lr = real(value, "hyper.lr", low=0, low_open=True)     # a finite float > 0
    name = choice(value, "hyper.schedule", SCHEDULES)
    value = by_kind("float[0,1)", value, "--momentum")      # what a command-line kind ("int>=1", ...) requires

Each raises Invalid (a ValueError) saying "NAME must be REQUIREMENT, got VALUE."; a caller with more to say (the
checkpoint loader names its file) words it again from `name`, `value` and `requirement`.
"""

from __future__ import annotations

import math

import numpy

__all__ = ["KINDS", "Invalid", "by_kind", "choice", "real", "whole"]


class Invalid(ValueError):
    """A value that is not what it must be: name, value and requirement ("a whole number >= 1")."""

    def __init__(self, name: str, value, requirement: str):
        super().__init__(f"{name} must be {requirement}, got {value!r}.")
        self.name, self.value, self.requirement = name, value, requirement


def whole(value, name: str, least: int = 1) -> int:
    """`value` as an int when it is a whole number >= least (a bool is not); Invalid otherwise. A numpy scalar (a
    checkpoint's entry, an array's size) counts as the Python number it holds."""
    if isinstance(value, numpy.generic):  # written out, not a call: layers check sizes on every forward
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise Invalid(name, value, f"a whole number >= {least}")
    return int(value)


def interval(low=None, high=None, low_open: bool = False, high_open: bool = False) -> str:
    """What real() requires, in words: "a finite number > 0", "in [0, 1)", "a finite number"."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return "a finite number"


def real(value, name: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a float when it is a finite number within the bounds (a bool is not); Invalid otherwise."""
    if isinstance(value, numpy.generic):
        value = value.item()
    fits = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and (low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))
    if not fits:
        raise Invalid(name, value, interval(low, high, low_open, high_open))
    return float(value)


def choice(value, name: str, choices):
    """`value` when it is one of `choices`; Invalid naming them otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise Invalid(name, value, f"one of {', '.join(choices)}")
    return value


# The numeric kinds of the command line's options (nets/train/settings.py's RunOptions): what each requires, for
# the option types of scripts/ and for the same settings read back from a checkpoint. (parse, check)
KINDS = {
    "int>=1": (int, lambda value, name: whole(value, name, 1)),
    "int>=0": (int, lambda value, name: whole(value, name, 0)),
    "float>0": (float, lambda value, name: real(value, name, low=0, low_open=True)),
    "float>=0": (float, lambda value, name: real(value, name, low=0)),
    "float[0,1)": (float, lambda value, name: real(value, name, low=0, high=1, high_open=True)),
}


def by_kind(kind: str, value, name: str):
    """`value` checked as the option kind `kind` ("int>=1", ... in KINDS) requires."""
    return KINDS[kind][1](value, name)
