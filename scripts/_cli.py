"""What every script shares: the project on sys.path, and user errors as one line on stderr (exit 1).

    from _cli import one_line_errors

    @click.command()
    @click.argument("checkpoint")
    @one_line_errors
    def main(checkpoint): ...

A known error (bad data, checkpoint, device, image, plot, a ValueError from bad shapes, a missing file)
prints `error: <its first line>` and exits 1, without a traceback. Anything else is a bug and keeps its
traceback. Set NETS_TRACEBACK=1 to see the traceback of a known error too.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

# `python scripts/x.py` puts scripts/ on sys.path, not the project; this makes `import nets` work
# without `pip install -e .`.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

# (module, class name) of the project's user-facing errors. Only modules already imported are looked at:
# an error cannot come from a module that was never loaded, and this keeps _cli free of heavy imports.
KNOWN_ERRORS = [
    ("backend", "BackendError"),
    ("nets.idx", "DataError"),
    ("nets.datasets", "DataError"),
    ("nets.checkpoint", "CheckpointError"),
    ("nets.digits", "DigitImageError"),
    ("nets.plots", "PlotError"),
]


def known_error_types() -> tuple[type, ...]:
    """The project's user-facing exception classes, plus ValueError and OSError."""
    types = [ValueError, OSError]
    for module_name, class_name in KNOWN_ERRORS:
        error_type = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(error_type, type) and issubclass(error_type, BaseException):
            types.append(error_type)
    return tuple(types)


def error_line(error: BaseException) -> str:
    """One line describing `error` for the user."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}."
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fail(message: str, code: int = 1):
    """Print `error: message` on stderr and exit with `code`."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def one_line_errors(function):
    """Decorator for a script's main: known errors become one line on stderr and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            fail("interrupted.", 130)
        except Exception as error:
            if not isinstance(error, known_error_types()) or os.environ.get("NETS_TRACEBACK"):
                raise
            fail(error_line(error))

    return wrapper
