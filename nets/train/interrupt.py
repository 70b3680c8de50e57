"""Ctrl-C during training: a flag the loop checks between steps, and the error that ends the run once the
checkpoint of the last completed step is written (nets/train/run.py writes it)."""

from __future__ import annotations

import signal

from nets.errors import NetsError

__all__ = ["EXIT_INTERRUPTED", "InterruptFlag", "Interrupted"]
EXIT_INTERRUPTED = 130


class Interrupted(NetsError):
    """Ctrl-C stopped training after a completed step; `state` (a nets.train.loop.TrainingState) says where. The
    run writes a checkpoint of that state and raises it again with a message saying where the checkpoint went."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, state, message: str = "training interrupted"):
        super().__init__(message)
        self.state = state


class InterruptFlag:
    """Turns Ctrl-C into a flag the loop checks between steps. Another Ctrl-C changes nothing: the run is already
    stopping at the end of the step under way, and the checkpoint it then writes must be written whole (Ctrl-\\ or
    kill end the process at once, losing the steps since the last checkpoint)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not in the main thread: leave Ctrl-C as it is
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
