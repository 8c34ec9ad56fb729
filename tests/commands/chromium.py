"""A real browser for the tests: headless Chromium driven over the DevTools protocol.

:func:`chromium` starts Debian's ``chromium`` with a fresh profile and no
network of its own; :meth:`Browser.load` opens a page, waits for its load
event and returns what its console said (messages, exceptions, log entries
such as a Content-Security-Policy refusal) and a PNG screenshot.
:func:`decode_png` reads the screenshot back (8-bit RGB or RGBA, the kind
Chromium writes) with zlib, to tell a rendered page from a blank one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0",
)  # fmt: skip
LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
WIDTH, HEIGHT = 1200, 2000  # the window
MAX_HEIGHT = 8000  # of a screenshot of the whole page
SCALE = 0.25


def chromium_binary() -> str:
    """The chromium executable; a skip when absent, a failure in CI (CI set, e.g. CI=true)."""
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (Debian package chromium)")
    return binary


@dataclass
class Loaded:
    console: list[str]  # every message, exception and log entry of warning level or above
    png: bytes


@dataclass
class Browser:
    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    events: list[dict[str, Any]] = field(default_factory=list)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; the events that arrive meanwhile are kept."""
        call_id = next(self.ids)
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                message = await self.ws.receive_json()
                if message.get("id") == call_id:
                    assert "error" not in message, message
                    result: dict[str, Any] = message["result"]
                    return result
                self.events.append(message)

    async def wait_for(self, method: str) -> None:
        async with asyncio.timeout(30):
            while not any(e.get("method") == method for e in self.events):
                self.events.append(await self.ws.receive_json())

    async def load(self, url: str) -> Loaded:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")
        # The whole page, at a quarter of its size: enough to tell ink from blank.
        layout = await self.call("Page.getLayoutMetrics")
        height = max(HEIGHT, min(MAX_HEIGHT, int(layout["cssContentSize"]["height"])))
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": SCALE}
        shot = await self.call(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        await self.call("Runtime.evaluate", expression="1")  # flush the console's events
        return Loaded(console_messages(self.events), base64.b64decode(shot["data"]))


def console_messages(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for event in events:
        params = event.get("params", {})
        method = event.get("method")
        if method == "Runtime.consoleAPICalled":
            out.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("warning", "error"):
            out.append(f"log {params['entry']['level']}: {params['entry']['text']}")
    return out


@contextlib.asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    """A headless Chromium with a fresh profile, and a DevTools session on one page."""
    binary = chromium_binary()
    profile = tmp_path / "chromium-profile"
    process = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    said = bytearray()
    try:
        async with asyncio.timeout(60):
            while (found := LISTENING.search(said)) is None:
                line = await process.stderr.readline()
                assert line, f"chromium exited: {said.decode(errors='replace')}"
                said += line
        # Keep reading its stderr, so that a chatty browser never blocks on a full pipe.
        drain = asyncio.create_task(process.stderr.read())
        http = found.group(1).decode().replace("ws://", "http://").rsplit("/devtools/", 1)[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{http}/json/list") as response:
                targets = await response.json()
            [page] = [t for t in targets if t["type"] == "page"]
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                browser = Browser(session, ws)
                for domain in ("Page", "Runtime", "Log"):
                    await browser.call(f"{domain}.enable")
                yield browser
        drain.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    pixels: list[tuple[int, ...]]  # RGB, row after row


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> Image:
    """An 8-bit RGB or RGBA, non-interlaced PNG's pixels (alpha dropped)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, bytearray(), b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), header
    assert colour_type in (2, 6), header
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(bytes(idat))
    previous = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        pixels += [tuple(line[x : x + 3]) for x in range(0, stride, channels)]
        previous = line
    return Image(width, height, pixels)
