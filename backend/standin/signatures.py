"""The installed CuPy's names and keyword arguments: the stand-in lets through only what CuPy accepts.

Module functions have Python signatures (`inspect.signature(cupy.take)`); ndarray methods are Cython and
carry theirs in the first line of their docstring (`_ndarray_base.sum(self, axis=None, ...)`); ufuncs take
`out`, `dtype` and `casting` and nothing else (cupy/_core/_kernel.pyx, ufunc.__call__).
"""

from __future__ import annotations

import functools
import inspect
import re

UFUNC_KEYWORDS = frozenset({"out", "dtype", "casting"})


class MissingInCupyError(AttributeError):
    """Code used a name that CuPy does not have: it would fail on the GPU."""


class NotModelledError(AttributeError):
    """CuPy has the name, but the stand-in does not model what it launches; model it in backend/standin."""


_DEFAULT = object()


def _parameter(text: str) -> inspect.Parameter | str:
    """One parameter of a Cython docstring signature: 'Py_ssize_t axis1', 'order=\'C\'', '*shape', '*'."""
    text = text.strip()
    if text == "*":
        return "*"
    name, _, default = text.partition("=")
    name = name.split()[-1]  # drop a Cython type such as Py_ssize_t or _ndarray_base
    if name.startswith("**"):
        return inspect.Parameter(name[2:], inspect.Parameter.VAR_KEYWORD)
    if name.startswith("*"):
        return inspect.Parameter(name[1:], inspect.Parameter.VAR_POSITIONAL)
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                             default=_DEFAULT if default else inspect.Parameter.empty)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_docstring_signature(first_line: str) -> inspect.Signature:
    """inspect.Signature of 'name(self, a, b=1, *args, c=None)' (self dropped)."""
    match = re.search(r"\((.*)\)", first_line)
    if match is None:
        raise ValueError(f"no signature in {first_line!r}")
    parameters, keyword_only = [], False
    for part in _split_top_level(match.group(1)):
        parameter = _parameter(part)
        if parameter == "*":
            keyword_only = True
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            keyword_only = True
        elif keyword_only and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            parameter = parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        parameters.append(parameter)
    if parameters and parameters[0].name == "self":
        parameters = parameters[1:]
    return inspect.Signature(parameters)


class CupySignatures:
    """Signatures of the real cupy module's functions and ndarray methods, read once each."""

    def __init__(self, cupy):
        self.cupy = cupy

    def has(self, name: str) -> bool:
        return hasattr(self.cupy, name)

    def is_ufunc(self, name: str) -> bool:
        return isinstance(getattr(self.cupy, name, None), self.cupy.ufunc)

    def has_method(self, name: str) -> bool:
        return hasattr(self.cupy.ndarray, name)

    @functools.lru_cache(maxsize=None)
    def function(self, name: str) -> inspect.Signature:
        return inspect.signature(getattr(self.cupy, name))

    @functools.lru_cache(maxsize=None)
    def method(self, name: str) -> inspect.Signature:
        doc = (getattr(self.cupy.ndarray, name).__doc__ or "").strip()
        return parse_docstring_signature(doc.splitlines()[0])


def check_call(signature: inspect.Signature, what: str, args, kwargs) -> None:
    """Raise TypeError, as CuPy would, when args/kwargs do not fit CuPy's `signature` of `what`."""
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"{what}: {error} (CuPy's signature is {what}{signature})") from None


def check_ufunc_keywords(name: str, kwargs) -> None:
    unknown = set(kwargs) - UFUNC_KEYWORDS
    if unknown:
        raise TypeError(f"Wrong arguments {sorted(unknown)} for the CuPy ufunc {name}: "
                        f"CuPy ufuncs take only {', '.join(sorted(UFUNC_KEYWORDS))} as keywords.")


def cupy_function(name: str | None = None):
    """Decorate a stand-in function: its arguments are checked against cupy.<name>'s real signature first."""
    def decorate(implementation):
        function_name = name or implementation.__name__

        @functools.wraps(implementation)
        def checked(self, *args, **kwargs):
            check_call(self._signatures.function(function_name), f"cupy.{function_name}", args, kwargs)
            return implementation(self, *args, **kwargs)

        return checked
    return decorate


def cupy_method(name: str | None = None):
    """Decorate a stand-in ndarray method: checked against cupy.ndarray.<name>'s docstring signature first."""
    def decorate(implementation):
        method_name = name or implementation.__name__

        @functools.wraps(implementation)
        def checked(self, *args, **kwargs):
            check_call(self._xp._signatures.method(method_name), f"cupy.ndarray.{method_name}", args, kwargs)
            return implementation(self, *args, **kwargs)

        return checked
    return decorate
