"""One request's way through the proxy, read top-down in handler.py: the
gate at its route, its body, the prompt judged, the upstream call, the answer
judged or passed through, and what goes back to the client."""
