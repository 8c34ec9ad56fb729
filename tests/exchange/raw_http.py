"""A request written on a raw socket and its answer read to the end, trailers included.

aiohttp's client drops trailers, so the tests of Server-Timing's trailer read
the bytes themselves; and Server-Timing values parsed strictly (W3C syntax).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from multidict import CIMultiDict

from tests.loopback import RunningProxy

# RFC 9110 token; a Server-Timing param's value is a token or a quoted string.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_ENTRY = re.compile(rf'({_TOKEN})((?:;{_TOKEN}=(?:{_TOKEN}|"[^"\\]*"))*)')
_PARAM = re.compile(rf'(?:;({_TOKEN})=({_TOKEN}|"[^"\\]*"))')


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    trailers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    chunked: bool = False


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    version: str = "1.1",
    close: bool = True,
) -> bytes:
    head = [f"{method} {path} HTTP/{version}", "Host: x"]
    head += ["Connection: close"] if close else []
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def send_raw(proxy: RunningProxy, *requests: bytes) -> list[Answer]:
    """Requests written at once on a fresh connection (the last should close it); the answers."""
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(b"".join(requests))
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    answers = []
    while raw:
        answer, raw = parse_answer(raw)
        answers.append(answer)
    assert len(answers) == len(requests), answers
    return answers


def parse_answer(raw: bytes) -> tuple[Answer, bytes]:
    """The first answer in ``raw``, and the bytes after it."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = _fields(lines)
    answer = Answer(int(status_line.split()[1]), headers, rest)
    if headers.get("Transfer-Encoding", "").lower() != "chunked":
        length = int(headers.get("Content-Length", len(rest)))
        answer.body = rest[:length]
        return answer, rest[length:]
    answer.chunked = True
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        body += rest[:size]
        assert rest[size : size + 2] == b"\r\n", "a chunk not ended by CRLF"
        rest = rest[size + 2 :]
    trailer_lines = []
    while True:
        line, _, rest = rest.partition(b"\r\n")
        if not line:
            break
        trailer_lines.append(line.decode("latin-1"))
    answer.body, answer.trailers = bytes(body), _fields(trailer_lines)
    return answer, rest


def _fields(lines: list[str]) -> CIMultiDict[str]:
    fields: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.partition(":")
        fields.add(name.strip(), value.strip())
    return fields


def server_timing(value: str) -> dict[str, dict[str, str]]:
    """{entry: its params} of a Server-Timing value, each entry checked against W3C syntax.

    A filter's entries are keyed ``filter-NAME/STAGE`` (one per stage); quoted
    values are unquoted.
    """
    entries: dict[str, dict[str, str]] = {}
    for text in value.split(", "):
        match = _ENTRY.fullmatch(text)
        assert match, f"not a Server-Timing entry: {text!r} in {value!r}"
        params = {k: v.strip('"') for k, v in _PARAM.findall(match.group(2))}
        name = match.group(1)
        key = f"{name}/{params['desc']}" if name.startswith("filter-") else name
        assert key not in entries, f"{key} twice in {value!r}"
        entries[key] = params
    return entries


def durations(value: str) -> dict[str, str]:
    """{entry: its dur, as written} of a Server-Timing value."""
    return {name: params["dur"] for name, params in server_timing(value).items()}
