"""What every script shares: the project on sys.path, and user errors as one line on stderr.

    from _cli import one_line_errors

    @click.command()
    @click.argument("checkpoint")
    @one_line_errors
    def main(checkpoint): ...

A user error (a NetsError: bad data, checkpoint, option, output path, device, image, plot) prints
`error: <its first line>` and exits with the error's exit_code (1 unless it says otherwise), without a
traceback. Anything else (a ValueError, OSError or KeyError from inside the project) is a bug and keeps its
traceback. Set NETS_TRACEBACK=1 to see the traceback of a user error too.

Ctrl-C while a script is still starting (importing numpy, torch, ...: each script imports this module first)
prints `error: interrupted while starting; nothing was done.` and exits with 130, as Ctrl-C later does.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_WHILE_STARTING = "error: interrupted while starting; nothing was done.\n"


def _interrupted_while_starting(signum, frame):
    os.write(2, INTERRUPTED_WHILE_STARTING.encode())  # not sys.stderr: it may be closing when the script ends
    os._exit(130)  # mid-import: nothing to clean up, and no module may catch it


if os.path.dirname(os.path.abspath(sys.argv[0])) == os.path.dirname(os.path.abspath(__file__)):  # a script here
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import functools  # noqa: E402  (after the handler: every import from here on may be interrupted)
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402

# `python scripts/x.py` puts scripts/ on sys.path, not the project; this makes `import nets` work
# without `pip install -e .`.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from backend.errors import NetsError, first_line  # noqa: E402  (needs the path above)


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (FloatRange lets nan through: every comparison is false)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def fail(message: str, code: int = 1):
    """Print `error: message` on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def refuse_empty(values: dict) -> None:
    """An option or argument given as '' ({name: value}) is one line and exit 2, before any work: an unset shell
    variable must not pass for "not given" (an empty --resume would start afresh over the default checkpoint)."""
    for name, value in values.items():
        if value is not None and str(value) == "":
            instead = ", or leave the option out" if name.startswith("--") else ""
            fail(f"{name} is empty (''); give a path{instead} (is a shell variable unset?).", 2)


def one_line_errors(function):
    """Decorator for a script's main: a NetsError becomes one line on stderr and its exit code; bugs keep
    their tracebacks."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:  # started: Ctrl-C is KeyboardInterrupt
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted.", 130)
        except NetsError as error:
            if os.environ.get("NETS_TRACEBACK"):
                raise
            fail(first_line(error), getattr(error, "exit_code", 1))

    return wrapper
