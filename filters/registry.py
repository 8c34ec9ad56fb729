"""Find a filter class by the name a config gives it.

A ``type`` is resolved, in order, as a built-in name (``pii``), an entry
point in the ``taxmeter.filters`` group (installed plugins), or an import
path ``package.module:Class``, imported from the installed packages or,
failing those, from the current directory (as uvicorn and gunicorn do).
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from filters.base import STAGES
from filters.builtin import BUILTIN_FILTERS

ENTRY_POINT_GROUP = "taxmeter.filters"


class FilterLoadError(ValueError):
    """The filter type cannot be found or is not a filter."""


def resolve_filter_class(type_name: str) -> type[Any]:
    """The class named by ``type_name``; raises FilterLoadError with the reason."""
    if type_name in BUILTIN_FILTERS:
        cls = _import(BUILTIN_FILTERS[type_name])
    elif ":" in type_name:
        cls = _import_from_here_too(type_name)
    else:
        matches = entry_points(group=ENTRY_POINT_GROUP, name=type_name)
        if not matches:
            known = ", ".join(sorted(BUILTIN_FILTERS))
            raise FilterLoadError(
                f"unknown filter type {type_name!r} (built-in: {known}; or an entry point "
                f"in {ENTRY_POINT_GROUP!r}; or an import path 'package.module:Class')"
            )
        try:
            cls = next(iter(matches)).load()
        except Exception as exc:
            raise FilterLoadError(f"cannot load entry point {type_name!r}: {exc}") from exc
    _check_shape(type_name, cls)
    assert isinstance(cls, type)
    return cls


def _import_from_here_too(path: str) -> object:
    """A config's import path: the installed packages first, then the current directory
    (the console script's sys.path has its own bin directory, not that one).

    The directory is on sys.path only while that module is imported (with what it
    imports then). Left there, every later import of an optional module that is not
    installed (aiohttp's ``aiodns`` and ``brotli``, ``onnxruntime``) would run a file
    of that name from wherever taxmeter was started, a shared directory too.
    """
    here = os.getcwd()
    if here in sys.path or "" in sys.path:
        return _import(path)
    sys.path.append(here)  # appended: a file here never shadows an installed module
    try:
        return _import(path)
    finally:
        sys.path.remove(here)


def _import(path: str) -> object:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise FilterLoadError(f"expected 'package.module:Class', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FilterLoadError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise FilterLoadError(f"module {module_name!r} has no {attr!r}") from None


def _check_shape(type_name: str, cls: object) -> None:
    if not isinstance(cls, type):
        raise FilterLoadError(f"{type_name!r} is not a class")
    stages = getattr(cls, "stages", None)
    if not isinstance(stages, tuple) or not stages or not all(s in STAGES for s in stages):
        raise FilterLoadError(f"{type_name!r} must have a 'stages' tuple of {', '.join(STAGES)}")
    if not callable(getattr(cls, "check", None)):
        raise FilterLoadError(f"{type_name!r} has no 'check' method")
