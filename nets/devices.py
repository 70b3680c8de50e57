"""The device a command asked for (--device cpu|gpu|auto) as a backend, with the advice a user needs when the GPU
cannot be used: backend/ says what is wrong, this says what to install.

    backend = open_backend("auto", seed=0, log=print)   # the CPU without a word where no NVIDIA GPU is
    problem = gpu_unavailable()                          # None, or the one line --device gpu would print
"""

from __future__ import annotations

import backend as backend_lib
from backend import AUTO_CPU, INSTALL_CUDA_LIBRARIES, INSTALL_CUPY, Backend

from nets.commands import install_hint, python_command
from nets.errors import DeviceError

__all__ = ["gpu_unavailable", "log_why_cpu", "open_backend", "with_fix"]


def _cuda13() -> str:
    return f"for a CUDA 13 driver, {python_command()} -m pip install 'cupy-cuda13x[ctk]' instead"


def with_fix(text: str, fix: str | None) -> str:
    """`text` (a BackendError's or GpuProblem's sentence) followed by the command that mends it, where one does."""
    if fix == INSTALL_CUPY:
        return (f"{text} Install CuPy with `{install_hint('gpu')}` (CUDA 12 drivers; {_cuda13()}); it needs an "
                "NVIDIA GPU and its driver.")
    if fix == INSTALL_CUDA_LIBRARIES:
        return (f"{text} Install the CUDA libraries: {python_command()} -m pip install 'cupy-cuda12x[ctk]', or "
                f"{_cuda13()}.")
    return text


def gpu_unavailable() -> str | None:
    """Why --device gpu cannot run here, with what to do, in one line; None when it can."""
    problem = backend_lib.gpu_problem()
    return None if problem is None else with_fix(problem, problem.fix)


def open_backend(device: str, seed: int = 0, log=None) -> Backend:
    """The Backend of `device` ("cpu", "gpu", "auto", or the hidden "standin"); DeviceError, one line, when it cannot
    be used. Under "auto" without a GPU, log(line) tells why only where a GPU is present but unusable: a machine with
    no NVIDIA GPU at all gets the CPU without a word about CUDA."""
    try:
        chosen = backend_lib.get_backend(device, seed=seed)
    except backend_lib.BackendError as error:
        raise DeviceError(with_fix(str(error), error.fix)) from None
    if log is not None:
        log_why_cpu(chosen, log)
    return chosen


def log_why_cpu(chosen: Backend, log) -> None:
    """After --device auto chose the CPU: log(line) why, where a GPU is here but could not be used."""
    problem = chosen.why_cpu
    if problem is not None and not getattr(problem, "absent", False):
        log(AUTO_CPU + with_fix(problem, getattr(problem, "fix", None)))
