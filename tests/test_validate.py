"""nets.validate: the one check of whole numbers, real numbers and names, and its message."""

import math

import numpy
import pytest

from nets.validate import KINDS, Invalid, by_kind, choice, real, whole


@pytest.mark.parametrize("value, least, expected", [(1, 1, 1), (0, 0, 0), (numpy.int64(7), 1, 7), (2**70, 1, 2**70)])
def test_whole_numbers_pass_as_ints(value, least, expected):
    result = whole(value, "count", least)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [0, -1, 2.0, 2.5, True, numpy.bool_(True), "3", None, numpy.float32(3)])
def test_anything_else_is_not_a_whole_number(value):
    with pytest.raises(Invalid) as info:
        whole(value, "Linear in_features")
    error = info.value
    assert isinstance(error, ValueError) and error.name == "Linear in_features"
    assert error.requirement == "a whole number >= 1"
    assert str(error) == f"Linear in_features must be a whole number >= 1, got {error.value!r}."


@pytest.mark.parametrize("value, bounds, requirement", [
    (0.0, dict(low=0, low_open=True), "a finite number > 0"),
    (-1e-9, dict(low=0), "a finite number >= 0"),
    (1.0, dict(low=0, high=1, high_open=True), "in [0, 1)"),
    (10.5, dict(low=0, high=10, low_open=True), "in (0, 10]"),
    (math.nan, {}, "a finite number"),
    (math.inf, dict(low=0), "a finite number >= 0"),
    (-math.inf, dict(high=0), "a finite number <= 0"),
    (False, dict(low=0), "a finite number >= 0"),
    ("0.1", dict(low=0), "a finite number >= 0"),
])
def test_real_numbers_outside_their_bounds_are_refused(value, bounds, requirement):
    with pytest.raises(Invalid) as info:
        real(value, "hyper.lr", **bounds)
    assert info.value.requirement == requirement and info.value.name == "hyper.lr"


def test_real_numbers_within_their_bounds_pass_as_floats():
    assert real(1, "x", low=0) == 1.0 and type(real(1, "x", low=0)) is float
    assert real(numpy.float32(0.5), "x", low=0, high=1, high_open=True) == 0.5
    assert real(0, "x", low=0, high=1) == 0.0 and real(1, "x", low=0, high=1) == 1.0


def test_choices_and_kinds():
    assert choice("adam", "hyper.optimizer", ("sgd", "adam")) == "adam"
    with pytest.raises(Invalid, match=r"hyper.optimizer must be one of sgd, adam, got 'rmsprop'\."):
        choice("rmsprop", "hyper.optimizer", ("sgd", "adam"))
    with pytest.raises(Invalid):
        choice(["adam"], "hyper.optimizer", ("sgd", "adam"))
    assert by_kind("int>=0", 0, "seed") == 0
    with pytest.raises(Invalid, match="in \\[0, 1\\)"):
        by_kind("float[0,1)", 1.0, "hyper.momentum")
    for kind, (parse, _) in KINDS.items():  # each kind parses its text as an int or a float
        assert parse in (int, float), kind
