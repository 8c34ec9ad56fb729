"""``taxmeter calibrate``: the self-reported overhead against a client's."""
