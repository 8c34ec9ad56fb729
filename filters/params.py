"""Param checks shared by the built-in filters: each names its param in the error.

A filter's constructor calls these on what the config gave it; a ValueError
or TypeError stops start-up with the filter named (see :mod:`filters.base`).
``bool`` is an ``int`` subclass, so ``max_chars: true`` is refused as a
number: it is a config mistake, not 1.
"""

from __future__ import annotations

import re

# Patterns combined into one regex are renumbered, so a numbered reference
# would silently point at another pattern's group.
_NUMBERED_REF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]|\(\?\([0-9]")


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {value!r}")
    return value


def string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, got {value!r}")
    return value


def non_empty(name: str, value: object) -> str:
    """A string with something in it besides white space."""
    given = string(name, value)
    if not given.strip():
        raise ValueError(f"{name}: expected a non-empty string")
    return given


def strings(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name}: expected a list of strings")
    return tuple(value)


def one_of(name: str, value: object, options: tuple[str, ...]) -> str:
    """``value`` when it is one of ``options``; the error quotes them in their order."""
    if value not in options:
        quoted = [f'"{option}"' for option in options]
        listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        raise ValueError(f"{name}: expected {listed}, got {value!r}")
    assert isinstance(value, str)
    return value


def number(name: str, value: object, kind: str = "a number") -> float:
    """An int or a float (its range is the caller's to check)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected {kind}, got {value!r}")
    return value


def integer(
    name: str, value: object, low: int, high: int | None = None, *, expected: str | None = None
) -> int:
    """An int from ``low`` (to ``high``); ``expected`` names what is wanted in both errors."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected {expected or 'an integer'}, got {value!r}")
    if value < low or (high is not None and value > high):
        if expected is None:
            bound = f"of at least {low}" if high is None else f"from {low} to {high}"
            expected = f"an integer {bound}"
        raise ValueError(f"{name}: expected {expected}, got {value}")
    return value


def combinable_pattern(name: str, pattern: str, wrapped: str, flags: int = 0) -> None:
    """Refuse a regex that cannot be one alternative of a combined pattern.

    ``wrapped`` is ``pattern`` as it will stand in the combination, compiled
    so, so that a global inline flag not at its start is reported against it.
    """
    try:
        compiled = re.compile(wrapped, flags)
    except re.error as exc:
        raise ValueError(f"{name}: invalid regex {pattern!r}: {exc}") from None
    if compiled.fullmatch(""):
        raise ValueError(f"{name}: {pattern!r} matches the empty string")
    if _NUMBERED_REF.search(pattern):
        raise ValueError(
            f"{name}: {pattern!r} uses a numbered group reference; "
            "use a named group, (?P<name>...) with (?P=name)"
        )
