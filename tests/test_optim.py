"""SGD and Adam: torch.optim parity, in-place updates, no per-step temporaries, exact state round trips."""

import tracemalloc

import numpy
import pytest

from nets.optim import SGD, Adam, build_optimizer
from conftest import torch_or_skip

SHAPES = {"fc1.weight": (6, 5), "fc1.bias": (6,), "fc2.weight": (3, 6), "fc2.bias": (3,)}

# float64 agrees to rounding; float32 to a few ulps accumulated over the steps.
TOLERANCE = {"float64": 1e-12, "float32": 1e-6}

SGD_SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
]
ADAM_SETTINGS = [
    dict(),
    dict(lr=0.01, weight_decay=0.05),
    dict(lr=0.003, betas=(0.8, 0.99), eps=1e-6),
]


def host_parameters(dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def host_gradient_sequence(steps, dtype, seed=1):
    rng = numpy.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()} for _ in range(steps)]


def run_ours(optimizer_class, settings, backend, dtype, gradients, lrs=None):
    params = {name: backend.asarray(array) for name, array in host_parameters(dtype).items()}
    optimizer = optimizer_class(params, **settings)
    for index, grads in enumerate(gradients):
        if lrs is not None:
            optimizer.lr = lrs[index]
        optimizer.step({name: backend.asarray(g) for name, g in grads.items()})
    return {name: backend.to_numpy(p) for name, p in params.items()}


def run_torch(torch_class_name, settings, dtype, gradients, lrs=None):
    torch = torch_or_skip()
    params = {name: torch.tensor(array, requires_grad=True) for name, array in host_parameters(dtype).items()}
    optimizer = getattr(torch.optim, torch_class_name)(list(params.values()), **settings)
    for index, grads in enumerate(gradients):
        if lrs is not None:
            optimizer.param_groups[0]["lr"] = lrs[index]
        for name, p in params.items():
            p.grad = torch.tensor(grads[name])
        optimizer.step()
    return {name: p.detach().numpy() for name, p in params.items()}


def max_relative_deviation(ours, theirs):
    """Largest |ours - theirs| / max(|theirs|, 1): relative, except near zero where it is absolute.

    The parameters are O(1), and torch's add(alpha=) is a fused multiply-add, so SGD differs from it
    by an ulp of the operands; where `param - lr * grad` cancels to near zero that is no ulp of the result.
    """
    return max(float(numpy.max(numpy.abs(ours[k] - theirs[k]) / numpy.maximum(numpy.abs(theirs[k]), 1.0)))
               for k in ours)


@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("steps", [1, 3])
def test_sgd_matches_torch(backend, dtype, settings, steps):
    gradients = host_gradient_sequence(steps, dtype)
    ours = run_ours(SGD, settings, backend, dtype, gradients)
    theirs = run_torch("SGD", settings, dtype, gradients)
    for name in ours:
        assert ours[name].dtype == dtype
    assert max_relative_deviation(ours, theirs) <= TOLERANCE[dtype.name]


@pytest.mark.parametrize("settings", ADAM_SETTINGS,
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "defaults")
def test_adam_matches_torch_over_several_steps(backend, dtype, settings):
    gradients = host_gradient_sequence(6, dtype)
    ours = run_ours(Adam, settings, backend, dtype, gradients)
    theirs = run_torch("Adam", settings, dtype, gradients)
    for name in ours:
        assert ours[name].dtype == dtype
    assert max_relative_deviation(ours, theirs) <= TOLERANCE[dtype.name]


@pytest.mark.parametrize("optimizer_class, torch_name, settings", [
    (SGD, "SGD", dict(lr=0.1, momentum=0.9)),
    (Adam, "Adam", dict(lr=0.01)),
])
def test_lr_changed_between_steps_is_used(backend, dtype, optimizer_class, torch_name, settings):
    lrs = [0.1, 0.05, 0.02, 0.01]
    gradients = host_gradient_sequence(len(lrs), dtype)
    ours = run_ours(optimizer_class, settings, backend, dtype, gradients, lrs=lrs)
    theirs = run_torch(torch_name, settings, dtype, gradients, lrs=lrs)
    assert max_relative_deviation(ours, theirs) <= TOLERANCE[dtype.name]


def test_defaults_are_torchs():
    torch = torch_or_skip()
    adam = Adam({"w": numpy.zeros(2)})
    torch_adam = torch.optim.Adam([torch.zeros(2, requires_grad=True)]).defaults
    assert adam.lr == torch_adam["lr"] and adam.betas == torch_adam["betas"]
    assert adam.eps == torch_adam["eps"] and adam.weight_decay == torch_adam["weight_decay"]
    sgd = SGD({"w": numpy.zeros(2)}, lr=0.1)
    torch_sgd = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1).defaults
    for key in ("momentum", "dampening", "weight_decay", "nesterov"):
        assert getattr(sgd, key) == torch_sgd[key]


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.5),
    lambda p: Adam(p, lr=0.01, weight_decay=0.01),
])
def test_updates_the_parameter_arrays_in_place(backend, dtype, make):
    params = {name: backend.asarray(a) for name, a in host_parameters(dtype).items()}
    identities = {name: id(p) for name, p in params.items()}
    before = {name: backend.to_numpy(p).copy() for name, p in params.items()}
    optimizer = make(params)
    for grads in host_gradient_sequence(2, dtype):
        optimizer.step({name: backend.asarray(g) for name, g in grads.items()})
    for name, p in params.items():
        assert id(p) == identities[name] and optimizer.params[name] is p
        assert p.dtype == dtype
        assert not numpy.array_equal(backend.to_numpy(p), before[name])


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
    lambda p: Adam(p, lr=0.01, weight_decay=0.01),
])
def test_a_step_allocates_no_parameter_sized_temporaries(make):
    size = 500_000  # 4 MB in float64
    params = {"w": numpy.ones(size), "b": numpy.ones(10)}
    grads = {"w": numpy.full(size, 0.5), "b": numpy.full(10, 0.5)}
    optimizer = make(params)
    optimizer.step(grads)  # the first step allocates the state buffers
    tracemalloc.start()
    try:
        optimizer.step(grads)
        optimizer.step(grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size * 8 / 10, f"a step allocated {peak} bytes at peak"


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: SGD(p, lr=0.05),
    lambda p: Adam(p, lr=0.01, weight_decay=1e-3),
])
def test_state_dict_round_trip_continues_bit_exactly(backend, dtype, make):
    steps = 4
    gradients = [{n: backend.asarray(g) for n, g in grads.items()}
                 for grads in host_gradient_sequence(2 * steps, dtype)]

    straight = {name: backend.asarray(a) for name, a in host_parameters(dtype).items()}
    optimizer = make(straight)
    for grads in gradients:
        optimizer.step(grads)

    first = {name: backend.asarray(a) for name, a in host_parameters(dtype).items()}
    optimizer = make(first)
    for grads in gradients[:steps]:
        optimizer.step(grads)
    state = optimizer.state_dict()
    for per_param in state["state"].values():
        assert all(type(array) is numpy.ndarray for array in per_param.values())
    assert state["step"] == steps

    resumed = {name: backend.asarray(backend.to_numpy(p).copy()) for name, p in first.items()}
    fresh = make(resumed)
    fresh.load_state_dict(state)
    for grads in gradients[steps:]:
        fresh.step(grads)
    for name in straight:
        numpy.testing.assert_array_equal(backend.to_numpy(resumed[name]), backend.to_numpy(straight[name]))


def test_state_dict_is_a_snapshot():
    params = host_parameters(numpy.float64)
    optimizer = Adam(params)
    optimizer.step(host_gradient_sequence(1, numpy.float64)[0])
    state = optimizer.state_dict()
    saved = state["state"]["exp_avg"]["fc1.weight"].copy()
    optimizer.step(host_gradient_sequence(1, numpy.float64, seed=5)[0])
    numpy.testing.assert_array_equal(state["state"]["exp_avg"]["fc1.weight"], saved)


def test_load_state_dict_restores_hyperparameters():
    optimizer = Adam(host_parameters(numpy.float64), lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)
    other = Adam(host_parameters(numpy.float64))
    other.load_state_dict(optimizer.state_dict())
    assert (other.lr, other.betas, other.weight_decay) == (0.01, (0.8, 0.9), 0.1)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(name="sgd"), "the optimizer state is for 'sgd'"),
    (lambda s: s["state"]["exp_avg"].update(extra=numpy.zeros(2)),
     "the adam optimizer state has exp_avg/extra, but no parameter extra."),
    (lambda s: s["state"]["exp_avg"].update({"fc1.bias": numpy.zeros(7)}),
     "exp_avg/fc1.bias of shape (7,), but the parameter is (6,)"),
    (lambda s: s["state"].update(momentum_buffer={}), "momentum_buffer/..., which adam does not keep"),
    (lambda s: s["hyperparameters"].update(eps=-1.0),
     "the adam optimizer state is unusable: eps must be a finite number >= 0, got -1.0."),
    (lambda s: s.update(step=-2), "step must be a whole number >= 0, got -2"),
])
def test_load_state_dict_rejects_mismatches(mutate, message):
    optimizer = Adam(host_parameters(numpy.float64))
    optimizer.step(host_gradient_sequence(1, numpy.float64)[0])
    state = optimizer.state_dict()
    mutate(state)
    with pytest.raises(ValueError) as info:
        Adam(host_parameters(numpy.float64)).load_state_dict(state)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_step_rejects_gradients_of_other_parameters():
    optimizer = SGD(host_parameters(numpy.float64), lr=0.1)
    grads = host_gradient_sequence(1, numpy.float64)[0]
    del grads["fc2.bias"]
    with pytest.raises(ValueError, match=r"missing \['fc2.bias'\]"):
        optimizer.step(grads)


@pytest.mark.parametrize("build, message", [
    (lambda p: SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: SGD(p, lr=-1.0), "lr must be a finite number >= 0, got -1.0."),
    (lambda p: SGD(p, lr=0.1, momentum=float("nan")), "momentum must be in [0, 1), got nan."),
    (lambda p: Adam(p, betas=(1.0, 0.999)), "betas[0] must be in [0, 1), got 1.0."),
    (lambda p: Adam(p, eps=-1e-8), "eps must be a finite number >= 0, got -1e-08."),
    (lambda p: build_optimizer("rmsprop", p, lr=0.1), "unknown optimizer 'rmsprop'; choose one of sgd, adam."),
    (lambda p: SGD({}, lr=0.1), "the optimizer got no parameters"),
])
def test_invalid_settings_are_refused(build, message):
    with pytest.raises(ValueError) as info:
        build(host_parameters(numpy.float64))
    assert message in str(info.value)


def test_build_optimizer():
    params = host_parameters(numpy.float32)
    sgd = build_optimizer("sgd", params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, SGD) and (sgd.lr, sgd.momentum, sgd.weight_decay) == (0.1, 0.9, 1e-4)
    adam = build_optimizer("adam", params, lr=0.002, momentum=0.9, weight_decay=1e-4)
    assert isinstance(adam, Adam) and (adam.lr, adam.weight_decay, adam.betas) == (0.002, 1e-4, (0.9, 0.999))


def model_parameters(backend, dtype, seed=0):
    """A small model's ParameterBuffer and gradients filled with a fixed sequence, plus the same as a dict."""
    from nets.nn.models import MLP

    model = MLP((6, 5, 3), backend=backend, dtype=dtype, rng=numpy.random.default_rng(seed))
    return model


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: SGD(p, lr=0.05, momentum=0.9, dampening=0.2),
    lambda p: Adam(p, lr=0.01, weight_decay=1e-3),
    lambda p: Adam(p, lr=0.01),
])
def test_the_flat_buffer_and_a_dict_of_arrays_update_alike(backend, dtype, make):
    flat_model, dict_model = model_parameters(backend, dtype), model_parameters(backend, dtype)
    flat = make(flat_model.parameters())
    dict_params = {name: backend.xp.ascontiguousarray(value) for name, value in dict_model.parameters().items()}
    by_name = make(dict_params)
    rng = numpy.random.default_rng(4)
    for _ in range(4):
        for name, grad in flat_model.gradients().items():
            grad[...] = backend.asarray(rng.standard_normal(grad.shape).astype(dtype))
        flat.step(flat_model.gradients())
        by_name.step({name: backend.xp.ascontiguousarray(g) for name, g in flat_model.gradients().items()})
    for name, value in flat_model.parameters().items():
        numpy.testing.assert_array_equal(backend.to_numpy(value), backend.to_numpy(dict_params[name]))
    assert flat.state_dict()["step"] == 4 and list(flat.state_dict()["state"]) == list(by_name.state_dict()["state"])


@pytest.mark.parametrize("capturable", [False, True])
def test_a_planned_learning_rate_equals_setting_it_before_each_step(backend, capturable):
    lrs = [0.02, 0.01, 0.005, 0.0025, 0.001]
    results = []
    for planned in (False, True):
        model = model_parameters(backend, numpy.float64)
        optimizer = Adam(model.parameters(), capturable=capturable and planned)
        if planned:
            optimizer.plan(lrs)
        rng = numpy.random.default_rng(5)
        for lr in lrs:
            model.gradients().flat[...] = backend.asarray(rng.standard_normal(model.gradients().flat.shape))
            if not planned:
                optimizer.lr = lr
            optimizer.step()
        results.append(backend.to_numpy(model.parameters().flat).copy())
    numpy.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name, make, per_step", [
    ("adam", lambda p: Adam(p, lr=1e-3), 12),
    ("adam, weight decay", lambda p: Adam(p, lr=1e-3, weight_decay=1e-4), 14),
    ("adam, capturable", lambda p: Adam(p, lr=1e-3, capturable=True), 14),
    ("sgd, momentum", lambda p: SGD(p, lr=0.1, momentum=0.9), 4),
])
def test_a_planned_step_is_a_dozen_whole_buffer_launches_and_no_transfer(standin_gpu, name, make, per_step):
    from nets.nn.models import CNN

    model = CNN(backend=standin_gpu, rng=numpy.random.default_rng(0))
    optimizer = make(model.parameters())
    optimizer.plan([1e-3] * 3)
    optimizer.step()  # the first SGD step copies the gradient into the momentum buffer
    counter = standin_gpu.xp.counter
    mark = counter.mark()
    optimizer.step()
    tally = counter.since(mark)
    assert (tally.launches, tally.transfers, tally.syncs, tally.allocations) == (per_step, 0, 0, 0), tally.by_site()
    mark = counter.mark()
    optimizer.step()
    optimizer.step()  # past the plan: the coefficients of the lr attribute go to the device then
    assert counter.since(mark).by_kind()["h2d"] == 1


def test_the_state_exists_before_the_first_step_and_loading_copies_into_it(backend):
    model = model_parameters(backend, numpy.float32)
    optimizer = Adam(model.parameters())
    arrays = [optimizer.groups[0].state[name] for name in ("exp_avg", "exp_avg_sq")]
    assert all(array.shape == model.parameters().flat.shape for array in arrays)
    assert optimizer.state_dict()["state"] == {}  # as torch.optim before its first step
    source = Adam(model_parameters(backend, numpy.float32, seed=1).parameters())
    source.params.grads.flat[...] = 1
    source.step()
    optimizer.load_state_dict(source.state_dict())
    assert all(optimizer.groups[0].state[name] is array for name, array in zip(("exp_avg", "exp_avg_sq"), arrays))
    numpy.testing.assert_array_equal(backend.to_numpy(arrays[0]), backend.to_numpy(source.groups[0].state["exp_avg"]))


def test_a_plan_keeps_its_device_table_and_an_empty_plan_means_none(backend):
    model = model_parameters(backend, numpy.float32)
    model.gradients().flat[...] = 1
    optimizer = Adam(model.parameters(), capturable=True)
    optimizer.plan([0.01, 0.02, 0.03])
    table = optimizer._table
    optimizer.step()
    optimizer.plan([0.01, 0.02])  # a shorter plan: the same array (a captured graph keeps reading it)
    assert optimizer._table is table
    optimizer.plan([])
    optimizer.lr = 0.005
    before = backend.to_numpy(model.parameters().flat).copy()
    optimizer.step()  # no plan: the lr attribute
    assert not numpy.array_equal(backend.to_numpy(model.parameters().flat), before)
