"""Names of the built-in filters, mapped to their "module:Class" import paths."""

from __future__ import annotations

BUILTIN_FILTERS: dict[str, str] = {
    "denylist": "filters.denylist:Denylist",
    "pii": "filters.pii:Pii",
    "max_length": "filters.max_length:MaxLength",
    "synthetic": "filters.synthetic:Synthetic",
    "semantic_guard": "filters.semantic_guard:SemanticGuard",
    "moderation": "filters.moderation:Moderation",
    "heuristics": "filters.heuristics:Heuristics",
}
