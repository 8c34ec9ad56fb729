"""Debian's prometheus package: promtool and the server, or a clear skip (a failure in CI)."""

from __future__ import annotations

import os
import shutil

import pytest


def prometheus_binary(name: str) -> str:
    """The path of ``promtool`` or ``prometheus``; skips locally, fails in CI when missing."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing; .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} not installed (Debian package prometheus)")
    return found
