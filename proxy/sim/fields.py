"""Reading the fields of a request to the simulated model server, or refusing it.

:class:`MockAPIError` is a refusal with its status; the server renders it in
the shape of the API the request was for (OpenAI's ``{"error": {...}}``, or
Anthropic's on the Messages API). The checks name the field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson


class MockAPIError(Exception):
    """A request the mock refuses, rendered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": "invalid_request_error",
                "param": self.param,
                "code": self.code,
            }
        }


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MockAPIError(
            400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise MockAPIError(400, "The request body must be a JSON object.", code="invalid_type")
    return body


def header_float(headers: Mapping[str, str], name: str, default: float, *, zero_ok: bool) -> float:
    """A numeric override header, or ``default`` when absent."""
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = "non-negative" if zero_ok else "positive"
        raise MockAPIError(
            400, f"Header {name} must be a {bound} number, got {raw!r}.", code="invalid_header"
        )
    return value


def model_name(body: dict[str, Any], default: str) -> str:
    model = body.get("model")
    return model if isinstance(model, str) and model else default


def int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not is_int(value) or not low <= value <= high:
        raise invalid(name, f"an integer from {low} to {high}")
    return int(value)


def is_int(value: object) -> bool:
    # bool is an int subclass; JSON true is not a token id or a count.
    return isinstance(value, int) and not isinstance(value, bool)


def missing(param: str) -> MockAPIError:
    return MockAPIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid(param: str, expected: str) -> MockAPIError:
    return MockAPIError(
        400, f"Invalid value for '{param}': expected {expected}.", param=param, code="invalid_value"
    )
