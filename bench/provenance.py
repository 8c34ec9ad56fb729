"""The line under every table a bench script writes: which run its figures come from.

One short line, the same for every table of a run, so that a table copied
elsewhere (an issue, a README) still says what measured it:

    _run: commit 8c18b4954424, 2026-12-04, AMD EPYC (2 cores), full run, 3 repeats_

The commit and the date (UTC) are read when the run starts: what was
measured, whatever changes meanwhile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

from machine import cpu_model, source_commit

PREFIX = "_run: "


@dataclass(frozen=True)
class Run:
    commit: str
    date: str  # YYYY-MM-DD, UTC
    machine: str  # the CPU and its cores, short
    what: str  # "full run, 3 repeats", "bench/micro.py"

    def line(self) -> str:
        return f"{PREFIX}commit {self.commit}, {self.date}, {self.machine}, {self.what}_"


def this_run(what: str) -> Run:
    """This checkout's commit, today's date (UTC) and this machine."""
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    return Run(source_commit(), date, f"{cpu_model()} ({os.cpu_count() or 0} cores)", what)


def _is_row(line: str) -> bool:
    return line.startswith("|")


def stamp(text: str, line: str) -> str:
    """``text`` with ``line`` under every markdown table that has none yet.

    A blank line parts them: a line directly under a table would be read as
    one more row of it."""
    lines = text.split("\n")
    out: list[str] = []
    for i, current in enumerate(lines):
        out.append(current)
        if not _is_row(current) or (i + 1 < len(lines) and _is_row(lines[i + 1])):
            continue
        after = next((rest for rest in lines[i + 1 :] if rest.strip()), "")
        if not after.startswith(PREFIX):
            text_follows = i + 1 < len(lines) and lines[i + 1].strip()
            out += ["", line, *([""] if text_follows else [])]
    return "\n".join(out)


def plain(line: str) -> str:
    """The line for a terminal: no markdown emphasis."""
    return line.removeprefix("_").removesuffix("_")
