"""Checks of single config values; each raises ConfigError naming the key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from filters.base import Stage

SUPPORTED_STAGES: tuple[Stage, ...] = ("input", "output", "stream")


class ConfigError(ValueError):
    """A bad configuration; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


def check_kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def check_mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {check_kind(value)}")
    for k in value:
        if not isinstance(k, str):
            raise ConfigError(key, f"keys must be strings, got {k!r}")
    return value


def check_known(key: str, section: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for k in section:
        if k not in allowed:
            path = f"{key}.{k}" if key else k
            raise ConfigError(path, f"unknown key (expected one of: {', '.join(allowed)})")


def check_str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a non-empty string, got {check_kind(value)}")
    return value


def check_identifier(key: str, value: Any) -> str:
    text = check_str(key, value)
    if not all(c.isascii() and (c.isalnum() or c in "_-.") for c in text) or len(text) > 64:
        raise ConfigError(key, f"expected letters, digits, '_', '-' or '.' (max 64), got {text!r}")
    return text


def check_str_list(key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"expected a list of strings, got {check_kind(value)}")
    return value


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {check_kind(value)}")
    return value


def check_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, f"expected a number, got {check_kind(value)}")
    return float(value)


def check_positive(key: str, value: Any) -> float:
    number = check_number(key, value)
    if not number > 0:
        raise ConfigError(key, f"expected a number > 0, got {value!r}")
    return number


def check_amount(key: str, value: Any) -> float:
    """A finite number >= 0: a price or a rate (nothing, written null, is 0)."""
    number = check_number(key, value)
    if not (math.isfinite(number) and number >= 0):
        raise ConfigError(key, f"expected a finite number >= 0, got {value!r}")
    return number


def check_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(key, f"expected a whole number > 0, got {check_kind(value)}")
    return value


def check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(key, f"expected one of {', '.join(allowed)}, got {check_kind(value)}")
    return str(value)


def check_stages(
    key: str, value: Any, allowed: tuple[Stage, ...] = SUPPORTED_STAGES
) -> tuple[Stage, ...]:
    """At least one of ``allowed``, given in any order; returned in ``allowed``'s."""
    stages = check_str_list(key, value)
    if not stages:
        raise ConfigError(key, "expected at least one stage")
    for stage in stages:
        check_choice(key, stage, allowed)
    return tuple(s for s in allowed if s in stages)


def check_url(key: str, value: Any) -> str:
    text = check_str(key, value)
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise ConfigError(key, f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def check_upstream_url(key: str, value: Any) -> str:
    """The model server's base URL: without the API's ``/v1``, which each request carries.

    taxmeter forwards a request's own path, so a base ending in ``/v1`` sends the model
    server ``/v1/v1/chat/completions``, and every request gets its 404: refused here,
    with the URL to use instead.
    """
    url = check_url(key, value)
    if url.lower().endswith("/v1") and "/" in url.split("://", 1)[1]:
        raise ConfigError(
            key,
            f"{url!r} ends in /v1, but requests keep their own path (/v1/chat/completions), "
            f"so the model server would be asked for /v1/v1/...: use {url[:-3]!r}",
        )
    return url
