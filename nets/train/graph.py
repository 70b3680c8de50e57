"""A nets training step of full batches as one CUDA graph: run once eagerly, then captured, then replayed with one
host call per step (backend/graphs.py), on CuPy or on the strict stand-in.

    step = GraphedStep(backend, optimizer, function, strict=False, note=print)
    with step.on_stream():          # the run on the graph's stream; the stream's cuBLAS handle is set up first
        for each full batch:
            if step.ready():        # captured (the first time: after one eager step), so
                step.replay()       # one host call runs the whole step
            else:
                function()          # eagerly, by the caller: the first one warms the step up (buffers, index
                                    # tables and kernels are made; its products go through that handle)

Whatever keeps the step from being captured (the cuBLAS handle cannot be set up, cuBLAS refuses a product of the
warm-up, the capture fails) makes it run eagerly from then on, with one line saying why (--graph auto), or stops the
run with GraphError (--graph on). The handle is set up before any of the run's device work, so a failure there
leaves nothing half done; a step that has started is never run again (its batch's rows have moved on).

`function` is one full-batch step that reads everything from the device: its batch's rows at a device counter
(nets/data/batches.py EpochOrder), the learning rate at the optimizer's device index (capturable), the images'
moves from an array rewritten in place each epoch; and it writes only into buffers kept between steps. So the
replay of one capture stays right across epochs. The host's side of a step (the optimizer's step count) is
kept here: a replay runs no Python.
"""

from __future__ import annotations

import contextlib

from backend import graphs
from nets.errors import NetsError, first_line

__all__ = ["GRAPH_MODES", "GraphError", "GraphedStep", "eager_because"]

GRAPH_MODES = ("auto", "on", "off")  # --graph: auto captures the nets' step on a GPU


def eager_because(mode: str, *, gpu: bool, impl: str = "nets", layers: str = "fast") -> str | None:
    """Why the training step runs eagerly under --graph `mode`, or None when it is captured: the one place that
    decides. ValueError, one line, when mode is "on" and the step cannot be captured."""
    if mode not in GRAPH_MODES:
        raise ValueError(f"unknown graph mode {mode!r}; choose one of {', '.join(GRAPH_MODES)}.")
    reason = ("--graph off" if mode == "off" else "PyTorch steps are not captured" if impl != "nets"
              else "the reference layers allocate what they return" if layers == "reference"
              else "NumPy runs no CUDA graphs" if not gpu else None)
    if mode == "on" and reason is not None:
        raise ValueError(f"--graph on captures the nets' fast training step on a GPU, but here {reason}; leave "
                         "out --graph (auto), or give --graph off.")
    return reason


class GraphError(NetsError, RuntimeError):
    """--graph on, and the step could not be captured; the message says why."""


class GraphedStep:
    """`function` replayed as a CUDA graph after one eager warm-up call (see the module docstring).

    strict: a capture that fails raises GraphError (--graph on); otherwise the step runs eagerly from then on
    and note() says why (--graph auto). note(line): how a line reaches the user.
    """

    def __init__(self, backend, optimizer, function, *, strict: bool = False, note=None):
        self._xp, self._optimizer, self._function = backend.xp, optimizer, function
        self._strict, self._note = strict, note or (lambda line: None)
        self._stream = graphs.side_stream(self._xp)
        self._graph = None
        self._warm = False
        self._direct = None  # the direct cuBLAS path of on_stream's block
        self._eager_because: str | None = None
        self.description = "training step: eager until captured"

    @property
    def stream(self):
        """The stream the graph is captured on and replayed on (every step's work must be issued on it)."""
        return self._stream

    @contextlib.contextmanager
    def on_stream(self):
        """The block's device work on the graph's stream (synchronized on the way in and out), every product of it
        through the stream's own cuBLAS handle, set up on the way in, as the captured step's will be: so the eager
        steps (the warm-up first) load the kernels the capture records. A handle that cannot be set up: the step
        runs eagerly, through CuPy (GraphError under --graph on)."""
        with graphs.on_stream(self._xp, self._stream):
            try:
                graphs.prepare(self._xp, self._stream)
            except Exception as error:  # nothing of the run's device work has been done yet
                self._give_up(f"cuBLAS could not be set up: {first_line(error)}", error)
                yield
                return
            with graphs.direct_cublas(self._xp, self._stream) as direct:
                self._direct = direct
                try:
                    yield
                finally:
                    self._direct = None

    @property
    def kernels(self) -> int | None:
        return None if self._graph is None else self._graph.kernels

    def invalidate(self) -> None:
        """Something the graph reads was reallocated (a longer learning-rate plan): capture again on the next call."""
        self._graph = None

    def ready(self) -> bool:
        """Whether the coming full batch's step is a replay (call replay()); False: the caller runs it eagerly (inside
        on_stream). The first full batch runs eagerly, the warm-up; the second is captured, then replayed."""
        if self._eager_because is not None:
            return False
        if self._graph is not None:
            return True
        if not self._warm:
            self._warm = True
            return False
        refused = self._direct.refused if self._direct is not None else None
        if refused is not None:  # a product of the warm-up went through CuPy: the graph would lack it
            self._give_up(f"cuBLAS refused a product of the step: {first_line(refused)}", refused)
            return False
        return self._capture()

    def __call__(self) -> None:
        """One full-batch step, inside on_stream: replayed when ready(), else run eagerly here."""
        if self.ready():
            self.replay()
        else:
            self._function()

    def replay(self) -> None:
        """The full-batch step, replayed with one host call; the optimizer's host step count kept."""
        if self._optimizer.steps_planned_ahead() < 1:
            raise RuntimeError("a captured step ran past the learning-rate plan; plan() the coming steps first.")
        self._graph.launch()
        self._optimizer.replayed_step()

    def _give_up(self, reason: str, error: BaseException) -> None:
        """The step is not captured: GraphError under --graph on, else eager from now on, and note() says why."""
        if self._strict:
            raise GraphError(f"the training step could not be captured as a CUDA graph ({reason}); "
                             "run with --graph off.") from error
        self._eager_because = reason
        self.description = f"training step runs eager: capturing it as a CUDA graph failed ({reason})"
        self._note(self.description)

    def _capture(self) -> bool:
        try:
            with self._optimizer.host_state_kept():  # capture runs the step's Python, not its device work
                self._graph = graphs.capture(self._xp, self._stream, self._function)
        except Exception as error:
            self._give_up(first_line(error), error)
            return False
        kernels = self._graph.kernels
        self.description = (f"training step captured as a CUDA graph ({kernels} kernels)" if kernels is not None
                            else "training step captured as a CUDA graph")
        self._note(self.description)
        return True

