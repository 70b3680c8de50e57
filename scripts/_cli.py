"""What every script shares: its first lines (signals handled, the project's packages checked, the project on
sys.path), and user errors as one line on stderr.

    from _cli import one_line_errors, run    # a script's first statement

    @click.command()
    @click.argument("checkpoint")
    @one_line_errors
    def main(checkpoint): ...

    if __name__ == "__main__":
        run(main)                            # or main(): run also ends the process the moment main is done

A user error (a NetsError: bad data, checkpoint, option, output path, device, image, plot) prints
`error: <its first line>` and exits with the error's exit_code (1 unless it says otherwise), without a
traceback. Anything else (a ValueError, OSError or KeyError from inside the project) is a bug and keeps its
traceback. Set NETS_TRACEBACK=1 to see the traceback of a user error too.

Ctrl-C, SIGTERM and SIGHUP give one line and exit 128 + the signal's number (130, 143, 129) at any moment after this
module's first lines: while the script is still starting (importing numpy, torch, ...) `error: interrupted while
starting; nothing was done.`; while it works, nets.train.interrupt's Stopped (a KeyboardInterrupt), which the
script turns into its line (train.py saves its checkpoint first); once it is done, while it exits, a line saying
so. A Python without the project's packages (numpy, click, ...) gets one line naming them and the commands that
set them up, exit 1: everything before that check is the standard library's.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED_WHILE_STARTING = "error: interrupted while starting; nothing was done.\n"
INTERRUPTED_WHILE_EXITING = "error: interrupted while exiting; everything written is complete.\n"
_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
_AS_SCRIPT = os.path.dirname(os.path.abspath(sys.argv[0] if sys.argv and sys.argv[0] else "")) == _SCRIPTS
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _said_by(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # closed, or the signal came in the middle of a write to it: nothing more can be done
            pass


def _exit_at_once(line: str):
    """A handler that ends the process at once, with `line` on stderr (written with os.write: sys.stderr may be
    closing) and 128 + the signal's number; for the moments where nothing is left to save (starting, exiting)."""
    def handle(signum, frame):
        _flush()
        os.write(2, line.replace("interrupted", _said_by(signum), 1).encode())
        os._exit(128 + signum)  # nothing to clean up, and no module may catch it

    return handle


_while_starting = _exit_at_once(INTERRUPTED_WHILE_STARTING)
_while_exiting = _exit_at_once(INTERRUPTED_WHILE_EXITING)


def _handle_stops(handler) -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, handler)


if _AS_SCRIPT:  # a script here; imported by a test, the handlers are left as they are
    _handle_stops(_while_starting)

# The packages every script needs (setup.cfg's install_requires), looked for without importing them.
REQUIRED_PACKAGES = ("numpy", "click", "tqdm", "threadpoolctl")


def missing_packages_line(missing, argv) -> str:
    """The one line a Python without the project's packages gets: what is missing, and the commands that set up the
    project's own Python (.venv) and run the script (argv: the script and its arguments) with it."""
    import shlex  # the standard library's, as everything here

    root = os.path.dirname(_SCRIPTS)
    here = os.path.relpath(root)
    project = "" if here == "." else (here if not (here == ".." or here.startswith(".." + os.sep)) else root)
    python = os.path.join(project, ".venv", "bin", "python")
    script = os.path.join(project, "scripts", os.path.basename(argv[0]))
    command = " ".join(shlex.quote(word) for word in (python, script, *argv[1:]))
    install = f"{shlex.quote(python)} -m pip install -e {shlex.quote((project or '.') + '[plot]')}"
    lacks = f"this Python ({sys.executable or 'python3'}) lacks {', '.join(missing)}, which the project needs"
    if os.path.isfile(python):
        return (f"error: {lacks}; run the script with the project's own Python: `{command}` (if that lacks them too, "
                f"`{install}` installs them).\n")
    make = f"make -C {shlex.quote(project)} setup-train" if project else "make setup-train"
    venv = f"python3 -m venv {shlex.quote(os.path.join(project, '.venv'))}"
    return (f"error: {lacks}; set up the project's own Python with `{make}` (or `{venv} && {install}`), then run "
            f"`{command}`.\n")


def _require_packages() -> None:
    from importlib.util import find_spec  # the standard library's

    missing = [name for name in REQUIRED_PACKAGES if find_spec(name) is None]
    if missing:
        _flush()
        os.write(2, missing_packages_line(missing, sys.argv).encode())
        os._exit(1)


if _AS_SCRIPT:
    _require_packages()

import functools  # noqa: E402  (after the handler: every import from here on may be interrupted)
from pathlib import Path  # noqa: E402

import click  # noqa: E402

# `python scripts/x.py` puts scripts/ on sys.path, not the project; this makes `import nets` work
# without `pip install -e .`.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from nets.errors import USER_ERRORS, first_line  # noqa: E402  (needs the path above)
from nets.train import interrupt  # noqa: E402
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
    their tracebacks. In a script run from the command line, Ctrl-C, SIGTERM and SIGHUP raise Stopped (a
    KeyboardInterrupt) while main runs, and end the process at once with one line once it is done."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        as_script = _AS_SCRIPT and signal.getsignal(signal.SIGINT) is _while_starting
        if as_script:  # started: a signal is now an exception the script can act on
            _handle_stops(_while_running)
        try:
            result = function(*args, **kwargs)
            _done(as_script)  # inside the try: a signal up to here is the KeyboardInterrupt below
            return result
        except KeyboardInterrupt as stop:
            _done(as_script)
            fail(f"{interrupt.interrupted_by(getattr(stop, 'signum', None))}.", interrupt.exit_code_of(stop))
        except USER_ERRORS as error:
            _done(as_script)
            if os.environ.get("NETS_TRACEBACK"):
                raise
            fail(first_line(error), getattr(error, "exit_code", 1))
        except BaseException:
            _done(as_script)
            raise

    return wrapper


def _while_running(signum, frame):
    """While a script works: a signal raises Stopped (a KeyboardInterrupt), once; the script is then ending, and
    another signal ends it at once (training holds them all in nets.train.interrupt.InterruptFlag meanwhile)."""
    _handle_stops(_while_exiting)
    interrupt.raise_stopped(signum, frame)


def _done(as_script: bool) -> None:
    if as_script:
        _handle_stops(_while_exiting)


def run(main) -> None:
    """Run a script's click command, then end the process the moment it is done, its output flushed: Python's own
    shutdown (long with torch loaded) is skipped, so that no signal can land in it and end the process by that
    signal, without a word."""
    try:
        main()
        code = 0
    except SystemExit as stop:  # click ends every command so
        code = stop.code
    except KeyboardInterrupt as stop:  # outside main (while click parses the options): nothing was done
        click.echo(f"error: {interrupt.interrupted_by(getattr(stop, 'signum', None))}.", err=True)
        code = interrupt.exit_code_of(stop)
    _done(_AS_SCRIPT)
    if not isinstance(code, int):  # sys.exit("message") prints it and exits 1, as Python does
        if code is not None:
            click.echo(str(code), err=True)
        code = 0 if code is None else 1
    if not _AS_SCRIPT:  # imported (a test): an ordinary exit
        raise SystemExit(code)
    _flush()
    os._exit(code)
