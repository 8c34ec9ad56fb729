"""OpenAI-shaped error bodies, so that clients' SDKs raise their usual errors."""

from __future__ import annotations

import orjson

# The HTTP status of each error code the proxy itself produces.
STATUS = {
    "content_filter": 400,
    "invalid_json": 400,
    "invalid_body": 400,
    "body_too_large": 413,
    "invalid_http_request": 400,
    "client_header_timeout": 408,
    "upstream_unreachable": 502,
    "upstream_reset": 502,
    "upstream_malformed": 502,
    "upstream_timeout": 504,
}


def error_body(message: str, code: str, error_type: str | None = None) -> bytes:
    """``{"error": {"message", "type", "code", "param"}}`` as OpenAI sends it."""
    if error_type is None:
        error_type = "invalid_request_error" if STATUS.get(code, 500) < 500 else "upstream_error"
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "code": code, "param": None}}
    )
