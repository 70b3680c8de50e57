"""A nets training step of full batches as one CUDA graph: run once eagerly, then captured, then replayed with one
host call per step (backend/graphs.py), on CuPy or on the strict stand-in.

    step = GraphedStep(backend, optimizer, function, strict=False, note=print)
    with step.on_stream():          # the whole run on the graph's stream, in order
        step()                      # 1st call: eager (buffers, index tables and kernels are made)
        step()                      # 2nd: captured, then replayed; every later call: replayed

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
            if not self._warm:  # its products through the cuBLAS handle the capture uses: kernels loaded before it
                with graphs.direct_cublas(self._xp, self._stream):
                    self._function()
                self._warm = True
                return
            if not self._capture():
                self._function()
                return
        if self._optimizer.steps_planned_ahead() < 1:
            raise RuntimeError("a captured step ran past the learning-rate plan; plan() the coming steps first.")
        self._graph.launch()
        self._optimizer.replayed_step()

    def _capture(self) -> bool:
        try:
            with self._optimizer.host_state_kept():  # capture runs the step's Python, not its device work
                self._graph = graphs.capture(self._xp, self._stream, self._function)
        except Exception as error:
            reason = first_line(error)
            if self._strict:
                raise GraphError(f"the training step could not be captured as a CUDA graph ({reason}); "
                                 "run with --graph off.") from error
            self._eager_because = reason
            self.description = f"training step runs eager: capturing it as a CUDA graph failed ({reason})"
            self._note(self.description)
            return False
        kernels = self._graph.kernels
        self.description = (f"training step captured as a CUDA graph ({kernels} kernels)" if kernels is not None
                            else "training step captured as a CUDA graph")
        self._note(self.description)
        return True

