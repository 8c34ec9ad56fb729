"""``taxmeter report``: the A/B comparison of the variants' latency tax."""
