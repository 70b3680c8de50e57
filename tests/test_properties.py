"""The property-based cases (hypothesis draws the inputs): IDX files round-trip, and im2col/col2im (the fast ones and
the reference ones) are an adjoint pair for any geometry. Kept apart, so that where hypothesis is not installed these
skip with a reason and every other file of the suite still runs."""

import numpy
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed; pip install -e .[test]",
                                 exc_type=ImportError)  # a broken install too
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from idx_files import write_idx  # noqa: E402
from nets.data.idx import read_idx  # noqa: E402
from nets.nn import reference  # noqa: E402
from nets.nn.layers import col2im, im2col  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    compressed=st.booleans(),
)
def test_any_uint8_array_round_trips(tmp_path_factory, shape, seed, compressed):
    array = numpy.random.default_rng(seed).integers(0, 256, size=shape, dtype=numpy.uint8)
    path = write_idx(tmp_path_factory.mktemp("idx") / "array", array, gzip=compressed)
    got = read_idx(path)
    assert got.shape == array.shape
    numpy.testing.assert_array_equal(got, array)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
)
def test_fast_im2col_and_col2im_are_adjoint_for_random_geometries(n, c, h, w, kh, kw, stride, padding):
    if h + 2 * padding < kh or w + 2 * padding < kw:
        return
    rng = numpy.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    x = rng.standard_normal((n, c, h, w))
    col = im2col(x, kh, kw, stride, padding)
    y = rng.standard_normal(col.shape)
    adjoint = (x * col2im(y, x.shape, kh, kw, stride, padding)).sum()
    assert (col * y).sum() == pytest.approx(adjoint, rel=1e-12, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4),
       kw=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2))
def test_reference_im2col_and_col2im_are_adjoint_for_random_geometries(n, c, h, w, kh, kw, stride, padding):
    """<im2col(x), y> == <x, col2im(y)> for any geometry (col2im adds where windows overlap)."""
    if h + 2 * padding < kh or w + 2 * padding < kw:
        return
    rng = numpy.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    x = rng.standard_normal((n, c, h, w))
    col = reference.im2col(x, kh, kw, stride, padding)
    y = rng.standard_normal(col.shape)
    assert (col * y).sum() == pytest.approx((x * reference.col2im(y, x.shape, stride, padding)).sum(), rel=1e-12)
