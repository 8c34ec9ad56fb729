"""The packaged labelled prompts that ``taxmeter evaluate`` reads by default (data only)."""
