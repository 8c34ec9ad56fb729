"""Serving: the listeners, the wire clock on every connection, client limits,
app wiring, workers, and the metrics listener."""
