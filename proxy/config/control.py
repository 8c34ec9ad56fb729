"""The config sections that steer traffic and control: variant assignment and admin."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from proxy.config.checks import (
    ConfigError,
    check_bool,
    check_known,
    check_mapping,
    check_str,
)
from proxy.config.sections import Check, given, keys_of

OVERRIDE_HEADER = "X-Taxmeter-Variant"
# The admin token, on a proxied request: lets OVERRIDE_HEADER choose the arm.
# Never forwarded upstream (proxy.exchange.headers).
ADMIN_TOKEN_HEADER = "X-Taxmeter-Admin-Token"


@dataclass(frozen=True, slots=True)
class AssignmentConfig:
    """How a request gets its variant.

    ``sticky``: None (random by weight), ``header:NAME`` (a stable hash of that
    header's value, random when it is absent) or ``client_address``.
    ``allow_override``: honour ``X-Taxmeter-Variant`` naming a configured variant
    on a request that also carries the admin token (``X-Taxmeter-Admin-Token``).
    ``expose``: the response says ``X-Taxmeter-Variant: NAME``.
    ``salt_env``: the environment variable holding the secret that keys the
    sticky hash, so a client cannot search offline for a key that lands in the
    arm it wants. A sticky key without one is refused unless ``allow_unsalted``.
    """

    sticky: str | None = None
    allow_override: bool = False
    expose: bool = False
    salt_env: str | None = None
    allow_unsalted: bool = False

    @property
    def sticky_header(self) -> str | None:
        if self.sticky is not None and self.sticky.startswith("header:"):
            return self.sticky.removeprefix("header:")
        return None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener: off unless configured and ``token_env`` holds a token."""

    host: str = "127.0.0.1"
    port: int = 9465
    token_env: str = "TAXMETER_ADMIN_TOKEN"


def parse_assignment(raw: Any) -> AssignmentConfig:
    section = check_mapping("assignment", raw)
    check_known("assignment", section, ASSIGNMENT_KEYS)
    assignment = AssignmentConfig(**given("assignment.", section, _ASSIGNMENT_CHECKS, _NULLABLE))
    unsalted = assignment.salt_env is None and not assignment.allow_unsalted
    if assignment.sticky is not None and unsalted:
        raise ConfigError(
            "assignment.salt_env",
            "a sticky assignment needs a secret salt (the name of an environment variable "
            "holding it), or allow_unsalted: true, or clients can choose their arm",
        )
    return assignment


def parse_admin(raw: Any, parse_host_port: Any) -> AdminConfig:
    section = check_mapping("admin", {} if raw is None else raw)
    check_known("admin", section, ("listen", "token_env"))
    admin = AdminConfig()
    if "listen" in section:
        where = parse_host_port("admin.listen", section["listen"])
        admin = replace(admin, host=where.host, port=where.port)
    if "token_env" in section:
        admin = replace(
            admin, token_env=_check_variable_name("admin.token_env", section["token_env"])
        )
    return admin


def _check_variable_name(key: str, value: Any) -> str:
    name = check_str(key, value)
    if not _is_token(name):
        raise ConfigError(key, f"expected an environment variable name, got {name!r}")
    return name


def _is_token(text: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "-_.") for c in text)


def _sticky(key: str, value: Any) -> str:
    text = check_str(key, value)
    header = text.removeprefix("header:")
    if text != "client_address" and (
        not text.startswith("header:") or not header or not _is_token(header)
    ):
        raise ConfigError(key, f"expected header:NAME or client_address, got {text!r}")
    return text


ASSIGNMENT_KEYS = keys_of(AssignmentConfig)
_ASSIGNMENT_CHECKS: dict[str, Check] = {
    "sticky": _sticky,
    "allow_override": check_bool,
    "expose": check_bool,
    "salt_env": _check_variable_name,
    "allow_unsalted": check_bool,
}
_NULLABLE = ("sticky", "salt_env")
