"""A nets training step of full batches as one CUDA graph: run once eagerly, then captured, then replayed with one
host call per step (backend/graphs.py), on CuPy or on the strict stand-in.

    step = GraphedStep(backend, optimizer, function, strict=False, note=print)
    with step.on_stream():          # the whole run on the graph's stream, in order
        step()                      # 1st call: the stream's cuBLAS handle, then the step eagerly (buffers, index
                                    # tables and kernels are made; its products go through that handle)
        step()                      # 2nd: captured, then replayed; every later call: replayed

Whatever keeps the step from being captured (the cuBLAS handle cannot be set up, cuBLAS refuses a product of the
warm-up, the capture fails) makes it run eagerly from then on, with one line saying why (--graph auto), or stops the
run with GraphError (--graph on). The handle is set up before any of the step's device work, so a failure there
leaves nothing half done; a step that has started is never run again (its batch's rows have moved on).

`function` is one full-batch step that reads everything from the device: its batch's rows at a device counter
(nets/data/batches.py EpochOrder), the learning rate at the optimizer's device index (capturable), the images'
moves from an array rewritten in place each epoch; and it writes only into homes kept between steps. So the
replay of one capture stays right across epochs. The host's side of a step (the optimizer's step count) is
kept here: a replay runs no Python.
"""

from __future__ import annotations

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
        self._eager_because: str | None = None
        self.description = "training step: eager until captured"

    @property
    def stream(self):
        """The stream the graph is captured on and replayed on (every step's work must be issued on it)."""
        return self._stream

    def on_stream(self):
        """The block's device work on the graph's stream (synchronized on the way in and out)."""
        return graphs.on_stream(self._xp, self._stream)

    @property
    def kernels(self) -> int | None:
        return None if self._graph is None else self._graph.kernels

    def invalidate(self) -> None:
        """Something the graph reads was reallocated (a longer learning-rate plan): capture again on the next call."""
        self._graph = None

    def __call__(self) -> None:
        if self._graph is None:
            if self._eager_because is not None:
                self._function()
                return
            if not self._warm:
                self._warm_up()
                return
            if not self._capture():
                self._function()
                return
        if self._optimizer.steps_planned_ahead() < 1:
            raise RuntimeError("a captured step ran past the learning-rate plan; plan() the coming steps first.")
        self._graph.launch()
        self._optimizer.replayed_step()

    def _warm_up(self) -> None:
        """The first call: the stream's cuBLAS handle first (lookup, create, stream, workspace), then the step eagerly
        with its products through that handle, so its capture records kernels already loaded."""
        try:
            graphs.prepare(self._xp, self._stream)
        except Exception as error:  # nothing of the step has run yet
            self._give_up(f"cuBLAS could not be set up: {first_line(error)}", error)
            self._function()
            return
        with graphs.direct_cublas(self._xp, self._stream) as warm_up:
            self._function()
        self._warm = True
        if warm_up.refused is not None:  # the step ran, that product through CuPy: the graph would lack it
            self._give_up(f"cuBLAS refused a product of the step: {first_line(warm_up.refused)}", warm_up.refused)

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

