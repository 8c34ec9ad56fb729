"""Reading a labelled dataset's JSON lines: the one reader of ``evaluate`` and canaries.

Both take the same files (one JSON document per line, blank lines skipped;
without a path, the prompt set shipped in the package) and name the file and
line of a fault; what a line must hold is each caller's, so this yields the
decoded documents and leaves their fields to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

PACKAGED_DATASET = "datasets/prompts.jsonl"  # inside the proxy package


class DatasetError(Exception):
    """The dataset cannot be read; the message names the file (and line)."""


def read_lines(path: str | None) -> tuple[str, Iterator[tuple[str, Any]]]:
    """(the file's name as shown, its documents as ("FILE:LINE", document)).

    Raises DatasetError when the file cannot be read; the documents, when a
    line is not UTF-8 or not JSON.
    """
    if path is None:
        shown = f"proxy/{PACKAGED_DATASET}"
        data = resources.files("proxy").joinpath(PACKAGED_DATASET).read_bytes()
    else:
        shown = path
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from exc
    return shown, _documents(shown, data)


def _documents(shown: str, data: bytes) -> Iterator[tuple[str, Any]]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{shown}:{number}"
        try:
            yield where, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DatasetError(f"{where}: not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
