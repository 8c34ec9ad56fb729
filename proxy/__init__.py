"""taxmeter: an inference proxy that measures the latency tax of AI safety filters."""
