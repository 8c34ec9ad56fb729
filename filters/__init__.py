"""taxmeter's filter interface and built-in safety filters."""

from filters.base import STAGES, Action, Edit, Filter, FilterContext, Stage, Verdict

__all__ = ["STAGES", "Action", "Edit", "Filter", "FilterContext", "Stage", "Verdict"]
