"""What the semantic_guard tests share: the ml-extra check and one ONNX cache per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from filters.semantic_runtime import import_ml, onnx_available


def require_ml(*, onnx: bool = False) -> None:
    """Skip without the ml extra, except under CI (``CI`` set), where a broken install fails."""
    try:
        import_ml()
        if onnx and not onnx_available():
            raise ValueError("onnxruntime is not installed")
    except ValueError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the semantic_guard tests, but the ml extra is missing: {exc}")
        pytest.skip(f"the ml extra is not installed: {exc}")


@pytest.fixture(scope="module")
def session_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default cache directory ($XDG_CACHE_HOME/taxmeter) moved under the session's tmp.

    Shared by every module of the session, so the model is exported once per
    run, and never written to the user's own cache.
    """
    home = tmp_path_factory.getbasetemp() / "xdg-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        yield home / "taxmeter"
