"""Routes: which API surface a request path is, as a bounded label.

(The text of each surface is found by its adapter in :mod:`proxy.surfaces`.)
"""

from __future__ import annotations

ROUTES = {
    "/v1/chat/completions": "chat_completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
ROUTE_LABELS = ("chat_completions", "completions", "embeddings", "messages", "other")


def classify(path: str) -> str:
    """The route label of a request path; never a value taken from the request."""
    return ROUTES.get(path.rstrip("/") or "/", "other")
