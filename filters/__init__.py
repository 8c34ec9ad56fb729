"""taxmeter's filter interface and built-in safety filters."""

from filters.base import (
    STAGES,
    Action,
    Declared,
    Edit,
    Filter,
    FilterContext,
    FilterOptions,
    Stage,
    Verdict,
    closer,
    declared,
)

__all__ = [
    "STAGES",
    "Action",
    "Declared",
    "Edit",
    "Filter",
    "FilterContext",
    "FilterOptions",
    "Stage",
    "Verdict",
    "closer",
    "declared",
]
