from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from filters.base import STAGES
from filters.builtin import BUILTIN_FILTERS


def test_names() -> None:
    assert set(BUILTIN_FILTERS) == {
        "denylist", "pii", "max_length", "synthetic", "heuristics", "moderation", "semantic_guard",
    }  # fmt: skip


@pytest.mark.parametrize(("name", "path"), sorted(BUILTIN_FILTERS.items()))
def test_path_resolves_to_a_filter_class(name: str, path: str) -> None:
    module_name, _, class_name = path.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    stages, check = cls.stages, cls.check  # read before isclass() narrows away Any
    assert inspect.isclass(cls), name
    assert stages == STAGES
    assert inspect.iscoroutinefunction(check)
