"""Stopping a run by signal: Ctrl-C (SIGINT), SIGTERM (a batch scheduler, `timeout`, `docker stop`) and SIGHUP (a
closed terminal) are handled alike. During training they are a flag the loop checks between steps; the run then
writes the checkpoint of the last completed step (nets/train/run.py) and ends in Interrupted, which exits with
128 + the signal's number: 130, 143 or 129. Outside training they raise Stopped, a KeyboardInterrupt, so every
`except KeyboardInterrupt` treats all three as Ctrl-C.

    with InterruptFlag() as flag:      # training: the three signals only set flag.requested
        ...
    install(raise_stopped)             # elsewhere (scripts/_cli.py does this once a script has started)
"""

from __future__ import annotations

import signal

from nets.errors import NetsError

__all__ = ["EXIT_INTERRUPTED", "InterruptFlag", "Interrupted", "STOP_SIGNALS", "Stopped", "exit_code",
           "exit_code_of", "install", "interrupted_by", "raise_stopped", "received"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process that Ctrl-C ended
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_received: list = []  # the first stop signal since the last reset: signals are the whole process's, not an object's


def exit_code(signum: int | None) -> int:
    """128 + the signal's number (a shell's convention for a process a signal stopped); 130 when there was none
    (a test's --stop-after-steps acts as Ctrl-C)."""
    return 128 + int(signum) if signum is not None else EXIT_INTERRUPTED


def received() -> int | None:
    """The first stop signal received since training began (or since the script started), or None."""
    return _received[0] if _received else None


def _record(signum: int) -> None:
    if not _received:
        _received.append(signum)


def interrupted_by(signum: int | None = None) -> str:
    """"interrupted" for Ctrl-C, "interrupted by SIGTERM" for another signal (by default the one received)."""
    signum = received() if signum is None else signum
    if signum is None or signum == signal.SIGINT:
        return "interrupted"
    return f"interrupted by {signal.Signals(signum).name}"


class Stopped(KeyboardInterrupt):
    """A stop signal outside training (loading data, drawing plots): a KeyboardInterrupt carrying its exit code."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = exit_code(signum)


def exit_code_of(error: BaseException) -> int:
    """The exit code a KeyboardInterrupt (or Stopped, or Interrupted) ends the script with."""
    return getattr(error, "exit_code", None) or exit_code(received())


def raise_stopped(signum, frame):
    """The handler outside training: raise Stopped."""
    _record(signum)
    raise Stopped(signum)


def install(handler) -> dict:
    """Make `handler` handle every stop signal; -> the handlers it replaced ({} outside the main thread, where
    Python cannot set them)."""
    previous = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not in the main thread
        restore(previous)
        return {}
    return previous


def restore(previous: dict) -> None:
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)


class Interrupted(NetsError):
    """A stop signal ended training after a completed step; `state` (a nets.train.loop.TrainingState) says where.
    The run writes a checkpoint of that state and raises it again with a message saying where the checkpoint went.
    exit_code: 128 + the signal's number (130 for Ctrl-C or none)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, state, message: str = "training interrupted", signum: int | None = None):
        super().__init__(message)
        self.state = state
        self.signum = received() if signum is None else signum
        self.exit_code = exit_code(self.signum)


class InterruptFlag:
    """Turns Ctrl-C, SIGTERM and SIGHUP into a flag the loop checks between steps. Another signal changes nothing:
    the run is already stopping at the end of the step under way, and the checkpoint it then writes must be
    written whole (Ctrl-\\ or SIGKILL end the process at once, losing the steps since the last checkpoint).
    signum: the first signal received, None when none was."""

    def __init__(self):
        self.requested = False
        self.signum = None
        self._previous = {}

    def __enter__(self):
        self.requested, self.signum = False, None
        _received.clear()
        self._previous = install(self._handle)
        return self

    def _handle(self, signum, frame):
        _record(signum)
        if not self.requested:
            self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        restore(self._previous)
        self._previous = {}
        return False
