"""What SGD and Adam share: parameter groups, the step count, the learning-rate table on the device, and their
state as host data (state_dict / load_state_dict). See nets/optim/__init__.py for how they are used."""

from __future__ import annotations

import contextlib

import numpy

from backend import array_module, to_numpy

from nets.nn.parameters import ParameterBuffer
from nets.validate import real, whole

__all__ = ["Optimizer"]


class _Group:
    """Parameters updated together: a ParameterBuffer's flat array, or one array of a plain dict.

    values: the parameter array; grads: its gradient array (None: passed to each step by name);
    views_of(array): {parameter name: view} of an array laid out like values; state: {state name: array}.
    """

    def __init__(self, values, grads, views_of, xp):
        self.values, self.grads, self.views_of = values, grads, views_of
        self.state = {}
        self.scratch = (xp.empty_like(values), xp.empty_like(values))


class Optimizer:
    """What SGD and Adam share: groups, the step count, the device coefficient table, state (de)serialisation.

    Subclasses set `name`, `state_names` (the per-parameter state, in the order it is stored) and
    implement `_update(group, grad, coefficients, first)`, `_host_coefficients(lr, step)`,
    `hyperparameters()` and `_set_hyperparameters(values)`.
    """

    name = "optimizer"
    state_names: tuple[str, ...] = ()
    # hyperparameter -> its check (nets.validate): on construction, in load_state_dict and by the checkpoint loader
    checks = {"lr": lambda value, name: real(value, name, low=0),
              "weight_decay": lambda value, name: real(value, name, low=0)}

    def __init__(self, params, lr, capturable=False):
        if not params:
            raise ValueError("the optimizer got no parameters; pass model.parameters().")
        self.lr = lr
        self.step_count = 0
        self.capturable = bool(capturable)
        self._xp = array_module(*params.values())
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(str(d) for d in dtypes)}.")
        self.dtype = dtypes.pop()
        self.params = params
        if isinstance(params, ParameterBuffer):
            self.groups = [_Group(params.flat, params.grads.flat, params.views_of, self._xp)]
        else:
            self.groups = [_Group(value, None, lambda array, name=name: {name: array}, self._xp)
                           for name, value in params.items()]
            for group, name in zip(self.groups, params):
                group.name = name
        self._table = None  # (coefficients, steps) on the device, for steps table_first, table_first + 1, ...
        self._table_first, self._table_steps = 1, 0
        self._device_index = None  # capturable: the column of the table the next step reads
        self._coefficients = None

    # ------------------------------------------------------------------ the learning rate on the device
    def _host_coefficients(self, lr: float, step: int) -> list[float]:
        raise NotImplementedError

    def plan(self, learning_rates, capacity: int = 0) -> None:
        """Put the coefficients of the next len(learning_rates) steps on the device, in one copy.

        learning_rates[i] is the lr of step `step_count + 1 + i`; steps past the plan use `self.lr`. The table
        keeps its device array from plan to plan (it grows only for a longer plan; `capacity`: make room for plans
        of that many steps now), so a captured step that reads it stays valid; CuPy's take wraps a column past the
        end, so a captured step must be replanned before it runs out (`steps_planned_ahead`; the eager step checks
        on the host).
        """
        learning_rates = [float(lr) for lr in learning_rates]
        if not learning_rates:
            self._table_steps = 0
            return
        first = self.step_count + 1
        host = numpy.array([self._host_coefficients(lr, first + i) for i, lr in enumerate(learning_rates)],
                           dtype=self.dtype).T
        columns = max(host.shape[1], capacity)
        if self._table is None or self._table.shape[0] != host.shape[0] or self._table.shape[1] < columns:
            self._table = self._xp.empty((host.shape[0], columns), dtype=self.dtype)
        self._table[:, :host.shape[1]] = self._xp.asarray(host)
        self._table_first, self._table_steps = first, host.shape[1]
        if self.capturable:
            if self._device_index is None:
                self._device_index = self._xp.zeros((), dtype=numpy.int64)
                self._coefficients = self._xp.empty(host.shape[0], dtype=self.dtype)
            self._device_index.fill(0)

    @property
    def coefficient_table(self):
        """The device table of planned coefficients (None before the first plan): a captured step reads it."""
        return self._table

    def steps_planned_ahead(self) -> int:
        """How many more steps the plan covers (0: the next step reads `lr` from the host)."""
        return max(0, self._table_first + self._table_steps - (self.step_count + 1))

    def replayed_step(self) -> None:
        """The host's side of a step whose device work a CUDA graph replayed: the step count moves on."""
        self.step_count += 1

    @contextlib.contextmanager
    def host_state_kept(self):
        """Leave the host's side of the optimizer as it was after the block: a step captured into a CUDA graph runs
        its Python (counting a step) but none of its device work."""
        saved = self._host_state()
        try:
            yield
        finally:
            self._set_host_state(saved)

    def _host_state(self):
        return self.step_count

    def _set_host_state(self, state) -> None:
        self.step_count = state

    def _step_coefficients(self):
        """This step's coefficients as device scalars (views, or a gather at the device counter)."""
        xp, table = self._xp, self._table
        column = self.step_count - self._table_first
        if table is not None and 0 <= column < self._table_steps:
            if self.capturable:  # the device counter picks the column: a replayed graph reads the right one
                xp.take(table, self._device_index, axis=1, out=self._coefficients)
                self._device_index += 1
                return [self._coefficients[i] for i in range(table.shape[0])]
            return [table[i, column] for i in range(table.shape[0])]
        host = numpy.asarray(self._host_coefficients(float(self.lr), self.step_count))
        values = xp.asarray(host, dtype=self.dtype)  # a step outside the plan: one small copy to the device
        return [values[i] for i in range(host.size)]

    # ------------------------------------------------------------------ stepping
    def step(self, grads=None) -> None:
        """Update every parameter in place.

        With a ParameterBuffer the gradients are its own (`grads` may be omitted, or be model.gradients());
        with a plain dict, `grads` is a dict of gradients by parameter name.
        """
        group_grads = self._resolve_grads(grads)
        self.step_count += 1
        coefficients = self._step_coefficients()
        for group, grad in zip(self.groups, group_grads):
            self._update(group, grad, coefficients)

    def _resolve_grads(self, grads):
        if isinstance(self.params, ParameterBuffer):
            if grads is not None and getattr(grads, "flat", None) is not self.params.grads.flat:
                raise ValueError("this optimizer updates a model's parameter buffer from its own gradients; "
                                 "call step() (or step(model.gradients())).")
            return [self.params.grads.flat]
        if grads is None or grads.keys() != self.params.keys():
            missing = sorted(self.params.keys() - (grads or {}).keys())
            unexpected = sorted((grads or {}).keys() - self.params.keys())
            raise ValueError(
                f"gradients do not match the parameters (missing {missing}, unexpected {unexpected}); "
                "pass model.gradients() of the model whose parameters the optimizer holds."
            )
        for name, param in self.params.items():
            if grads[name].shape != param.shape:
                raise ValueError(f"gradient {name} has shape {tuple(grads[name].shape)}, "
                                 f"parameter has {tuple(param.shape)}.")
        return [grads[group.name] for group in self.groups]

    def _update(self, group, grad, coefficients) -> None:
        raise NotImplementedError

    def _decayed(self, group, grad):
        """grad + weight_decay * param (torch's L2 term, added to the gradient) in scratch a, or grad itself."""
        weight_decay = float(self.weight_decay)
        if weight_decay == 0.0:
            return grad
        out = group.scratch[0]
        self._xp.multiply(group.values, weight_decay, out=out)
        out += grad
        return out

    # ------------------------------------------------------------------ state
    @classmethod
    def check_hyperparameters(cls, values: dict) -> None:
        """nets.validate.Invalid naming the first of `values` (hyperparameters() of this optimizer, or part of them)
        that is not what it must be; ValueError for one it does not have."""
        unknown = sorted(set(values) - set(cls.checks))
        if unknown:
            raise ValueError(f"{cls.name} has no hyperparameter {', '.join(map(str, unknown))}")
        for key, check in cls.checks.items():
            if key in values:
                check(values[key], key)

    @classmethod
    def check_state(cls, state: dict, shapes: dict) -> None:
        """ValueError for the first entry of a state_dict()'s "state" ({state name: {parameter name: array, or
        anything with a shape}}) that parameters of `shapes` ({name: shape}) cannot take; its message names the
        entry first ("exp_avg/fc1.weight of shape (2, 2), but the parameter is (128, 784)")."""
        for state_name, per_param in state.items():
            if state_name not in cls.state_names:
                raise ValueError(f"{state_name}/..., which {cls.name} does not keep (it keeps "
                                 f"{', '.join(cls.state_names)})")
            for param_name, array in per_param.items():
                if param_name not in shapes:
                    raise ValueError(f"{state_name}/{param_name}, but no parameter {param_name}")
                shape = tuple(getattr(array, "shape", numpy.shape(array)))
                if shape != tuple(shapes[param_name]):
                    raise ValueError(f"{state_name}/{param_name} of shape {shape}, but the parameter is "
                                     f"{tuple(shapes[param_name])}")

    def hyperparameters(self) -> dict:
        raise NotImplementedError

    def _set_hyperparameters(self, values: dict) -> None:
        raise NotImplementedError

    def _create_state(self) -> None:
        """Allocate (zeroed) every state array now, so a step never allocates and loading copies into them."""
        for group in self.groups:
            for state_name in self._active_state_names():
                if state_name not in group.state:
                    group.state[state_name] = self._xp.zeros_like(group.values)

    def _active_state_names(self) -> tuple[str, ...]:
        return self.state_names

    def state_dict(self) -> dict:
        """The optimizer's state as host data: name, step, hyperparameters, state[state name][param name]."""
        state = {}
        if self._has_state():
            for state_name in self._active_state_names():
                state[state_name] = {}
                for group in self.groups:
                    for name, view in group.views_of(group.state[state_name]).items():
                        state[state_name][name] = numpy.array(to_numpy(view), copy=True)
        return {"name": self.name, "step": int(self.step_count), "hyperparameters": self.hyperparameters(),
                "state": state}

    def _has_state(self) -> bool:
        return self.step_count > 0

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore `state_dict()` output (hyperparameters too, as torch.optim does) by copying into the state.

        Raises ValueError when it belongs to another optimizer or other parameters.
        """
        name = state_dict.get("name")
        if name != self.name:
            raise ValueError(f"the optimizer state is for {name!r}, but this optimizer is {self.name!r}.")
        buffers = state_dict.get("state", {})
        hyperparameters = dict(state_dict.get("hyperparameters", {}))
        try:
            step = whole(state_dict.get("step", 0), "step", 0)
            self.check_hyperparameters(hyperparameters)
        except ValueError as error:
            raise ValueError(f"the {self.name} optimizer state is unusable: {error}") from None
        try:
            self.check_state(buffers, {param_name: param.shape for param_name, param in self.params.items()})
        except ValueError as error:
            raise ValueError(f"the {self.name} optimizer state has {error}.") from None
        self._set_hyperparameters(hyperparameters)
        self._create_state()
        for group in self.groups:
            for state_name, array in group.state.items():
                array.fill(0)
                given = buffers.get(state_name, {})
                for param_name, view in group.views_of(array).items():
                    if param_name in given:
                        view[...] = self._xp.asarray(numpy.asarray(given[param_name]), dtype=self.dtype)
        self.step_count = step
        self._loaded(bool(buffers))
        self._table_steps = 0  # the plan was for other steps; the table keeps its device array

    def _loaded(self, had_state: bool) -> None:
        pass

    def __repr__(self):
        settings = ", ".join(f"{key}={value}" for key, value in self.hyperparameters().items())
        return f"{type(self).__name__}({settings}, step={self.step_count})"
