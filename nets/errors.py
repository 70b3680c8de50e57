"""The one base class of the errors a user can cause.

    class DataError(NetsError, ValueError): ...      # every user-facing error derives from NetsError

An error the user can cause (a bad file, option, path or device) is a NetsError whose message is one line
saying what is wrong and what to do. The scripts print that line and exit with `exit_code` (1 unless the
error says otherwise); any other exception is a bug and keeps its traceback. backend/ sits below nets and has
its own BackendError (a RuntimeError); USER_ERRORS is what the scripts catch as the user's.
"""

from __future__ import annotations

from backend import BackendError

__all__ = ["DeviceError", "NetsError", "USER_ERRORS", "first_line"]


class NetsError(Exception):
    """An error the user can cause, with a one-line message saying what to do; scripts exit with exit_code."""

    exit_code = 1


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what one-line errors quote."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DeviceError(NetsError, RuntimeError):
    """The device or library asked for cannot be used here (a GPU without CuPy, torch not installed, ...)."""


USER_ERRORS = (NetsError, BackendError)
