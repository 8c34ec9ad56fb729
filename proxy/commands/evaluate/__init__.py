"""``taxmeter evaluate``: each filter's catch rates beside its latency."""
