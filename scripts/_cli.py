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
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

import click

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
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted.", 130)
        except NetsError as error:
            if os.environ.get("NETS_TRACEBACK"):
                raise
            fail(first_line(error), getattr(error, "exit_code", 1))

    return wrapper
