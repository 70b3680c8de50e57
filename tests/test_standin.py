"""The strict CuPy stand-in refuses what CuPy refuses and counts what CuPy launches (backend/standin)."""

import numpy
import pytest

import backend
from backend.standin import MissingInCupyError, NotModelledError


def device(standin, shape=(4, 5), dtype=numpy.float32, seed=0):
    return standin.asarray(numpy.random.default_rng(seed).standard_normal(shape).astype(dtype))


def launches(standin, action):
    mark = standin.counter.mark()
    action()
    return standin.counter.since(mark)


# ---------------------------------------------------------------------------------- what it refuses


def test_names_cupy_lacks_and_names_not_modelled_are_refused(standin):
    with pytest.raises(MissingInCupyError, match="xp.no_such_function does not exist in CuPy"):
        standin.no_such_function
    with pytest.raises(NotModelledError, match="xp.cumsum exists in CuPy, but the stand-in does not model"):
        standin.cumsum
    a = device(standin)
    with pytest.raises(MissingInCupyError, match="cupy.ndarray has no attribute 'no_such_method'"):
        a.no_such_method
    with pytest.raises(NotModelledError, match="cupy.ndarray.cumsum"):
        a.cumsum()
    assert standin.float32 is numpy.float32 and standin.bool_ is numpy.bool_  # dtypes are NumPy's in CuPy too


@pytest.mark.parametrize("call, message", [
    (lambda xp, a: xp.take(a, xp.asarray(numpy.array([0, 1])), axis=0, mode="clip"), "cupy.take"),
    (lambda xp, a: xp.add(a, 1, where=a > 0), "Wrong arguments \\['where'\\]"),  # NumPy's keyword, not CuPy's
    (lambda xp, a: xp.exp(a, order="C"), "Wrong arguments \\['order'\\]"),
    (lambda xp, a: a.max(dtype=numpy.float64), "cupy.ndarray.max"),  # CuPy's max takes no dtype
    (lambda xp, a: a.sum(initial=0), "cupy.ndarray.sum"),
    (lambda xp, a: xp.empty((2,), dtype=numpy.float32, like=a), "cupy.empty"),
])
def test_keywords_cupy_lacks_are_refused(standin, call, message):
    with pytest.raises(TypeError, match=message):
        call(standin, device(standin))


def test_host_arrays_do_not_mix_with_device_arrays(standin):
    a = device(standin)
    host = numpy.ones((4, 5), dtype=numpy.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        standin.add(a, host)
    with pytest.raises(TypeError, match="Unsupported type"):
        standin.matmul(a, host.T)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        numpy.asarray(a)
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = host
    with pytest.raises(TypeError, match="numpy.concatenate was called on a device array"):
        numpy.concatenate([a, a])
    with pytest.raises(backend.DeviceMismatchError):
        backend.array_module(a, host)
    numpy.testing.assert_allclose(backend.to_numpy(numpy.exp(a)), numpy.exp(a.get()))  # as CuPy's __array_ufunc__


# ---------------------------------------------------------------------------------- what it counts


def test_a_ufunc_is_one_launch_and_an_output_it_does_not_own_is_an_allocation(standin):
    a, b = device(standin), device(standin, seed=1)
    tally = launches(standin, lambda: standin.add(a, b))
    assert (tally.launches, tally.allocations) == (1, 1) and tally.by_kind()["elementwise"] == 1
    assert launches(standin, lambda: standin.add(a, b, out=a)).by_kind() == {"elementwise": 1}
    a += 1
    a *= b
    assert launches(standin, lambda: standin.maximum(a, 0, out=a)).launches == 1


def test_an_input_overlapping_out_without_being_it_is_copied_first(standin):
    a = device(standin, (10,))
    tally = launches(standin, lambda: standin.add(a[1:], 1, out=a[:-1]))
    assert tally.by_kind() == {"elementwise": 1, "copy": 1, "alloc": 1}


def test_matmul_copies_operands_that_are_not_contiguous_and_outs_that_are_not_c_contiguous(standin):
    a, b = device(standin, (6, 8)), device(standin, (8, 4), seed=1)
    out = standin.empty((6, 4), dtype=numpy.float32)
    assert launches(standin, lambda: standin.matmul(a, b, out=out)).by_kind() == {"gemm": 1}
    assert launches(standin, lambda: standin.matmul(b.T, a.T)).by_kind() == {"gemm": 1, "alloc": 1}  # F-order
    assert launches(standin, lambda: standin.matmul(a[:, ::2], b[::2])).by_kind() == {
        "gemm": 1, "copy": 2, "alloc": 3}
    wide = standin.empty((6, 8), dtype=numpy.float32)
    assert launches(standin, lambda: standin.matmul(a, b, out=wide[:, :4])).by_kind() == {
        "gemm": 1, "copy": 1, "alloc": 1}
    numpy.testing.assert_allclose(wide[:, :4].get(), a.get() @ b.get(), rtol=1e-6)


def test_reductions_follow_cupys_cub_dispatch(standin):
    rows = device(standin, (128, 10))
    assert launches(standin, lambda: rows.max(axis=1)).by_kind()["reduction"] == 1  # segmented, trailing axis
    out = standin.empty(128, dtype=numpy.float32)
    assert launches(standin, lambda: rows.sum(axis=1, out=out)).by_kind() == {"reduction": 1, "copy": 1,
                                                                               "alloc": 2}
    # a leading axis of a C-ordered array: CuPy's own kernel, straight into out
    assert launches(standin, lambda: rows.sum(axis=0, out=standin.empty(10, numpy.float32))).launches == 1
    assert launches(standin, lambda: device(standin, (128,)).sum()).by_kind()["reduction"] == 1  # one tile
    assert launches(standin, lambda: device(standin, (10000,)).sum()).by_kind()["reduction"] == 2
    flags = standin.greater(device(standin, (128,)), 0)
    assert launches(standin, lambda: flags.sum()).by_kind()["reduction"] == 2  # bool: two-pass block reduction
    assert launches(standin, lambda: standin.greater(device(standin, (64,)), 0).sum()).by_kind()["reduction"] == 1
    assert launches(standin, lambda: rows.argmax(axis=1)).launches == 1
    assert launches(standin, lambda: rows.argmax()).by_kind() == {"reduction": 1, "copy": 1, "alloc": 3}
    assert launches(standin, lambda: rows.mean()).by_kind()["elementwise"] == 1  # CUB sum, then a divide


def test_take_along_axis_costs_several_kernels_as_on_cupy(standin):
    logits, labels = device(standin, (8, 10)), standin.asarray(numpy.arange(8).reshape(8, 1))
    tally = launches(standin, lambda: standin.take_along_axis(logits, labels, axis=1))
    assert tally.launches == 4 and tally.memsets == 1  # an arange, index arithmetic twice, the gather
    numpy.testing.assert_array_equal(standin.take(standin.asarray(numpy.eye(3)), standin.asarray(numpy.array([2, 0])),
                                                  axis=0).get(), numpy.eye(3)[[2, 0]])


def test_take_assignment_fill_and_creation(standin):
    a = device(standin, (6, 5))
    index = standin.asarray(numpy.array([4, 1]))
    assert launches(standin, lambda: standin.take(a, index, axis=0)).by_kind() == {"gather": 1, "alloc": 1}
    host_index = launches(standin, lambda: standin.take(a, numpy.array([4, 1]), axis=0)).by_kind()
    assert host_index["h2d"] == 1 and host_index["gather"] == 1
    b = device(standin, (6, 5), seed=1)

    def assign_same_layout():
        a[...] = b

    def assign_other_layout():
        a[...] = b.T.T[:, ::-1]

    def fill_zero():
        a[...] = 0

    def fill_one():
        a[:, 1] = 1

    assert launches(standin, assign_same_layout).by_kind() == {"memcpy": 1}
    assert launches(standin, assign_other_layout).by_kind() == {"copy": 1}
    assert launches(standin, fill_zero).by_kind() == {"memset": 1}
    assert launches(standin, fill_one).by_kind() == {"elementwise": 1}
    assert launches(standin, lambda: standin.zeros((3, 3), dtype=numpy.float32)).by_kind() == {"alloc": 1, "memset": 1}
    assert launches(standin, lambda: a.reshape(30)).launches == 0  # a view
    assert launches(standin, lambda: a.T.reshape(30)).by_kind()["copy"] == 1  # not viewable: CuPy copies


@pytest.mark.parametrize("read", [
    lambda a: float(a[0, 0]), lambda a: int(a[0, 0]), lambda a: bool(a[0, 0] > 0), lambda a: a[0, 0].item(),
    lambda a: a.get(), lambda a: a.tolist(), lambda a: backend.to_numpy(a),
])
def test_every_host_read_is_a_sync(standin, read):
    a = device(standin)
    assert launches(standin, lambda: read(a)).syncs == 1


def test_shapes_and_iteration_do_not_sync(standin):
    a = device(standin)
    tally = launches(standin, lambda: (len(a), a.shape, a.dtype, [row for row in a], a.flags.c_contiguous))
    assert tally.syncs == 0 and tally.launches == 0


def test_synchronize_counts_and_sites_name_the_caller(standin_gpu):
    xp = standin_gpu.xp
    mark = xp.counter.mark()
    standin_gpu.synchronize()
    xp.exp(standin_gpu.asarray(numpy.zeros(3)))
    tally = xp.counter.since(mark)
    assert tally.syncs == 1 and tally.launches == 1
    assert all("test_standin.py" in event.site for event in tally.events)
    assert list(tally.by_site()) == [next(site for site in tally.by_site())]
    assert standin_gpu.device_name() == "CuPy stand-in (NumPy)" and "stand-in" in standin_gpu.library_versions()["cupy"]
