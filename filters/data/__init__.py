"""The phrase lists semantic_guard embeds (data only)."""
