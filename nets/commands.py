"""The commands a message tells the user to run, spelled so that they work from where the user stands: this
Python (`.venv/bin/python` in the checkout), its pip, the project's scripts and extras by paths from the current
directory.

    install_hint("plot")      # ".venv/bin/python -m pip install -e '.[plot]'" (the package names outside a checkout)
    torch_install_hint()      # PyTorch's CPU build from its own index, pinned as `make test` pins it
    script_command("evaluate", "runs/cnn.npz")   # ".venv/bin/python scripts/evaluate.py runs/cnn.npz"
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["EXTRA_PACKAGES", "TORCH_CPU_INDEX", "TORCH_SPEC", "install_hint", "python_command", "script_command",
           "torch_install_hint"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TORCH_SPEC = "torch==2.13.0"  # the Makefile's TORCH_SPEC
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# What each extra of setup.cfg installs, for a hint outside a checkout (where `-e .[extra]` has nothing to install).
EXTRA_PACKAGES = {"plot": "matplotlib pillow", "gpu": "'cupy-cuda12x[ctk]'", "baseline": TORCH_SPEC}


def _from_here(path) -> str | None:
    """`path` relative to the current folder when it lies inside it, else None."""
    relative = os.path.relpath(os.path.abspath(path))
    return None if relative == ".." or relative.startswith(".." + os.sep) else relative


def _shown(path) -> str:
    """A path as typed from the current folder: relative inside it, absolute outside (unquoted)."""
    return _from_here(path) or os.path.abspath(path)


def python_command() -> str:
    """This Python as the user would type it here: a path inside the current folder (.venv/bin/python), the bare
    name when PATH finds this very interpreter under it, else the full path."""
    executable = os.path.abspath(sys.executable or "python3")
    if _from_here(executable) is None:
        found = shutil.which(os.path.basename(executable))
        if found and os.path.abspath(found) == executable:
            return os.path.basename(executable)
    return shlex.quote(_shown(executable))


def install_hint(extra: str) -> str:
    """The pip command that installs an extra of setup.cfg ("plot", "gpu", "baseline") into this Python."""
    if (PROJECT_ROOT / "setup.cfg").is_file():
        return f"{python_command()} -m pip install -e {shlex.quote(f'{_shown(PROJECT_ROOT)}[{extra}]')}"
    return f"{python_command()} -m pip install {EXTRA_PACKAGES[extra]}"


def torch_install_hint() -> str:
    """The pip command for PyTorch's CPU build (a few hundred MB; from the public index it is the CUDA build, GBs)."""
    return f"{python_command()} -m pip install {TORCH_SPEC} --index-url {TORCH_CPU_INDEX}"


def script_command(name: str, *arguments) -> str:
    """`python scripts/NAME.py ARGUMENTS...`, spelled to run from the current folder."""
    words = [python_command(), shlex.quote(_shown(PROJECT_ROOT / "scripts" / f"{name}.py")),
             *map(shlex.quote, map(str, arguments))]
    return " ".join(words)
