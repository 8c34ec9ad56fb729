"""A config section read into its frozen dataclass: the keys are the dataclass's fields.

Each section's parser names, per key, the check that turns what the YAML
gave into the field's value (:data:`Check`); :func:`given` runs the checks of
the keys the section has, and the caller ``replace``\\ s them into the
defaults. A key left out keeps the field's default; so does one written with
no value (``key:``, null) when the parser lists it in ``nullable``. The
keys a section accepts are its dataclass's fields (:func:`keys_of`), so the
two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from typing import Any

# Checks one value: the key's dotted path (for the error) and what the YAML gave.
Check = Callable[[str, Any], Any]


def keys_of(
    cls: type, *, leave_out: Collection[str] = (), more: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The keys of the section read into dataclass ``cls``: its fields, in their order,
    less the ones the config does not set (``leave_out``), and keys that are no field
    of it (``more``)."""
    return tuple(f.name for f in fields(cls) if f.name not in leave_out) + more


def given(
    prefix: str,
    section: Mapping[str, Any],
    checks: Mapping[str, Check],
    nullable: Collection[str] = (),
) -> dict[str, Any]:
    """The checked value of each key of ``checks`` the section gives, in the checks' order.

    ``prefix`` starts each key's path in errors (``"upstream."``; ``""`` at the top).
    """
    values: dict[str, Any] = {}
    for key, check in checks.items():
        if key not in section or (section[key] is None and key in nullable):
            continue
        values[key] = check(f"{prefix}{key}", section[key])
    return values


def whole(parse: Callable[[Any], Any]) -> Check:
    """The check of a key whose value is a section of its own, with its own parser
    (which names its keys itself)."""
    return lambda _key, value: parse(value)


def or_none(check: Check) -> Check:
    """A check that lets a null through as None (a field that can be None)."""
    return lambda key, value: None if value is None else check(key, value)


def choice(check: Callable[[str, Any, tuple[str, ...]], Any], allowed: tuple[str, ...]) -> Check:
    """A check of one of ``allowed``."""
    return lambda key, value: check(key, value, allowed)
