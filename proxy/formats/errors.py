"""OpenAI-shaped error bodies, so that clients' SDKs raise their usual errors."""

from __future__ import annotations

import orjson

# The HTTP status of each error code the proxy itself produces.
STATUS = {
    "content_filter": 400,
    "invalid_json": 400,
    "invalid_body": 400,
    "invalid_path": 400,
    "unjudged_route": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "client_body_timeout": 408,
    "unsupported_content_encoding": 415,
    "concurrency_limit": 429,
    "internal_error": 500,
    "invalid_http_request": 400,
    "client_header_timeout": 408,
    "upstream_unreachable": 502,
    "upstream_reset": 502,
    "upstream_malformed": 502,
    "upstream_response_too_large": 502,
    "upstream_timeout": 504,
}


def error_body(message: str, code: str, error_type: str | None = None) -> bytes:
    """``{"error": {"message", "type", "code", "param"}}`` as OpenAI sends it."""
    if error_type is None:
        status = STATUS.get(code, 500)
        if status < 500:
            error_type = "invalid_request_error"
        else:
            error_type = "server_error" if code == "internal_error" else "upstream_error"
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "code": code, "param": None}}
    )
