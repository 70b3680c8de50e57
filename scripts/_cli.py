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
from pathlib import Path  # noqa: E402

import click  # noqa: E402

# `python scripts/x.py` puts scripts/ on sys.path, not the project; this makes `import nets` work
# without `pip install -e .`.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from nets.errors import USER_ERRORS, first_line  # noqa: E402  (needs the path above)
from nets.validate import KINDS, Invalid  # noqa: E402


class Checked(click.ParamType):
    """A number option checked by nets.validate, as the same setting is checked wherever else it is met (read back
    from a checkpoint, given to a layer): parse(text) -> number, then check(number, name) -> the value.

        Checked.kind("float>0")                                        # a kind of nets.validate.KINDS
        Checked(float, lambda value, name: real(value, name, low=0, high=10, low_open=True))
    """

    def __init__(self, parse, check):
        self.parse, self.check = parse, check
        self.name = "integer" if parse is int else "number"

    @classmethod
    def kind(cls, kind: str) -> "Checked":
        return cls(*KINDS[kind])

    def convert(self, value, param, ctx):
        try:
            number = self.parse(value) if isinstance(value, str) else value
        except ValueError:  # not a number at all (or an int of thousands of digits): the check says what it must be
            number = value
        try:
            return self.check(number, param.name if param is not None else "value")
        except Invalid as error:
            self.fail(f"{value!r} is not {error.requirement}.", param, ctx)


def comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def comma_models(context, parameter, value) -> list[str]:
    """A click callback: --models as a comma-separated list of model names."""
    from nets.nn.architecture import MODEL_NAMES

    models = comma_list(value)
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown or not models:
        raise click.BadParameter(f"{', '.join(map(repr, unknown)) or 'nothing'} is not a model; give a comma-separated "
                                 f"list of {', '.join(MODEL_NAMES)}, e.g. mlp,cnn")
    return models


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
        except USER_ERRORS as error:
            if os.environ.get("NETS_TRACEBACK"):
                raise
            fail(first_line(error), getattr(error, "exit_code", 1))

    return wrapper
