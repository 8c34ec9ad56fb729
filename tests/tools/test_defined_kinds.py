"""tools/defined_kinds.py: the kinds, states and roles, read from the installed SDKs."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from proxy.surfaces import kinds
from tools.defined_kinds import main


def written() -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main()
    module: dict[str, Any] = {}
    exec(compile(out.getvalue(), "kinds.py", "exec"), module)  # our own output
    return module


def test_the_module_it_writes_holds_the_kinds_requests_are_made_of() -> None:
    module = written()
    assert {"text", "image_url", "function", "input_text", "function_call", "message",
            "tool_use", "tool_result", "thinking", "video_url"} <= module["KINDS"]  # fmt: skip
    assert {"completed", "in_progress", "incomplete"} <= module["STATES"]
    assert module["ROLES"] == {"system", "developer", "user", "assistant", "tool", "function"}
    assert "open sesame" not in module["KINDS"]  # a value read from a Literal, not any string
    assert "openai " in module["__doc__"]  # the SDKs it was written from, and their versions
    assert "anthropic " in module["__doc__"]


def test_the_module_the_proxy_reads_is_one_it_wrote() -> None:
    # Written from these SDKs or older ones: what it lists, a newer SDK still defines.
    module = written()
    assert module["ROLES"] == kinds.ROLES
    assert len(kinds.KINDS - module["KINDS"]) <= len(kinds.KINDS) // 20
