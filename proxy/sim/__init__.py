"""The simulated model server (OpenAI and Anthropic APIs, moderation), so
taxmeter can be tried and tested without a GPU."""
