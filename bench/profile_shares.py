"""Where a profile of the proxy says its CPU goes, from py-spy's raw output.

py-spy's ``-f raw`` writes one line per distinct stack: the frames from the
outermost to the innermost, each ``function (file:line)``, joined by ``;``,
then a space and the number of samples. A sample is charged to the file of
its innermost frame (who burns the CPU: C code called from Python shows as
its Python caller), and those files to the parts of the proxy below, the
grouping docs/benchmarks.md's table of shares uses.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from provenance import stamp

OTHER = "other"
# (part, the file prefixes it holds); no file matches two parts.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aiohttp's server: parsing, routing, the response objects, the socket writes to the "
     "client", ("aiohttp/",)),
    ("taxmeter's upstream client (`proxy/upstream/`)", ("proxy/upstream/",)),
    ("the handler, `respond`, headers, the wire tap",
     ("proxy/exchange/", "proxy/server/", "proxy/surfaces/", "proxy/formats/",
      "proxy/control/", "proxy/judge/")),
    ("the event loop (uvloop: epoll, socket reads, callbacks)",
     ("uvloop/", "asyncio/", "selectors.py")),
    ("metrics and `/stats` (prometheus_client included)",
     ("proxy/measure/metrics", "proxy/measure/stats", "proxy/measure/served",
      "prometheus_client/")),
    ("the timeline (marks, `breakdown()`, `Server-Timing`)",
     ("proxy/measure/timeline", "proxy/measure/marks")),
)  # fmt: skip
_OURS = ("(proxy/", "(filters/")
_ENTRY = ("(proxy/cli.py", "(proxy/__main__.py")  # below every frame: not what asked


def stacks(raw: str) -> Iterator[tuple[list[str], int]]:
    """(frames outermost first, samples) for each line of py-spy's raw output."""
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def file_of(frame: str) -> str:
    """``handle (aiohttp/web_protocol.py:512)`` -> ``aiohttp/web_protocol.py`` (also
    without the line, as :func:`function_of` writes it)."""
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    return where.rsplit(":", 1)[0] or frame


def function_of(frame: str) -> str:
    return frame.rpartition(" (")[0] + f" ({file_of(frame)})"


def part_of(path: str) -> str:
    return next((part for part, prefixes in PARTS if path.startswith(prefixes)), OTHER)


def _ours(frame: str) -> bool:
    return any(p in frame for p in _OURS) and not any(p in frame for p in _ENTRY)


def charge(raw: str) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples by innermost function, and by the innermost frame of taxmeter's own code."""
    inner: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks(raw):
        total += count
        inner[function_of(frames[-1])] += count
        mine = next((f for f in reversed(frames) if _ours(f)), None)
        ours[function_of(mine) if mine else "(no taxmeter frame: the loop, aiohttp)"] += count
    return inner, ours, total


def by_file(inner: collections.Counter[str]) -> collections.Counter[str]:
    files: collections.Counter[str] = collections.Counter()
    for function, count in inner.items():
        files[file_of(function)] += count
    return files


def shares(inner: collections.Counter[str]) -> list[tuple[str, float, str, float]]:
    """(part, its share of the samples, its largest function, that function's share), in
    the order of PARTS, ``other`` last; shares are fractions of all the samples."""
    total = sum(inner.values()) or 1
    parts: dict[str, collections.Counter[str]] = {p: collections.Counter() for p, _ in PARTS}
    parts[OTHER] = collections.Counter()
    for function, count in inner.items():
        parts[part_of(file_of(function))][function] += count
    rows = []
    for part, functions in parts.items():
        top, top_count = (functions.most_common(1) or [("—", 0)])[0]
        rows.append((part, functions.total() / total, top, top_count / total))
    return rows


def shares_table(inner: collections.Counter[str], line: str) -> str:
    """The shares as markdown, with the run's provenance ``line`` under the table."""
    rows = [f"| {part} | {share:.1%} | `{top}`, {top_share:.1%} |"
            for part, share, top, top_share in shares(inner)]  # fmt: skip
    header = ["| where | share of the proxy's samples | its largest function |", "|---|---|---|"]
    return stamp("\n".join([*header, *rows]), line)
