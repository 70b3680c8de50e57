"""What every plot shares: matplotlib imported lazily (the `plot` extra) and drawn on the Agg canvas, never pyplot,
so plotting works without a display and leaves no global figure state behind; one-line errors.

    figure = new_figure(10, 4)     # PlotError, with the install command, when matplotlib is missing
    save(figure, path)             # PlotError naming the path when it cannot be written
"""

from __future__ import annotations

from pathlib import Path

import numpy

from nets.commands import install_hint
from nets.errors import NetsError

__all__ = ["PlotError", "host", "matplotlib_missing", "new_figure", "require_matplotlib", "save", "whole_epoch_ticks"]


def matplotlib_missing() -> str:
    return f"matplotlib is not installed; install it with `{install_hint('plot')}`."


class PlotError(NetsError, RuntimeError):
    """A plot cannot be drawn (matplotlib missing, nothing to plot); the message says what to do."""


def require_matplotlib() -> None:
    """Raise PlotError (one line, with the install command) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(matplotlib_missing()) from None


def new_figure(width: float, height: float):
    """A matplotlib Figure attached to an Agg canvas; PlotError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(matplotlib_missing()) from None
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure, path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, format="png")
    except OSError as error:
        raise PlotError(f"cannot write {path} ({error.strerror or error}); choose another folder.") from error
    return path


def host(array) -> numpy.ndarray:
    """Any backend's array -> numpy (plots are drawn on the host)."""
    from backend import to_numpy

    return to_numpy(array)


def whole_epoch_ticks(axes, first: int, last: int) -> None:
    """Ticks on whole epochs only, from `first` to `last` (every one up to 12 of them, else matplotlib's choice of
    whole numbers), with half an epoch of margin: a single epoch gets the one tick "1", not 0.95 ... 1.05."""
    from matplotlib.ticker import MaxNLocator

    if last - first <= 12:
        axes.set_xticks(range(first, last + 1))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(first - 0.5 if first else 0, last + 0.5)
