"""Filters that misbehave on purpose, loaded by import path as a plugin would be."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import ClassVar

from filters.base import Edit, FilterContext, Verdict


class Raising:
    stages = ("input", "output")

    async def check(self, ctx: FilterContext) -> Verdict:
        raise RuntimeError("boom")


class SlowToBuild:
    """Takes ``build_s`` to construct, as a filter that loads a model does."""

    stages = ("input",)

    def __init__(self, build_s: float = 1.0) -> None:
        time.sleep(build_s)

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.allow()


class WaitsToBeNoticed:
    """Builds only once the build was said to be slow: as slow as the notice needs, no slower."""

    stages = ("input",)
    loads = "a model it pretends to load"

    def __init__(self, noticed: threading.Event, fail: bool = False) -> None:
        if not noticed.wait(timeout=60):
            raise RuntimeError("no notice came")
        if fail:
            raise ValueError("the model is broken")

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.allow()


class Closable:
    """Remembers being closed; each check waits ``hold_s`` so a request can hold it."""

    stages = ("input",)
    closed: ClassVar[list[object]] = []  # every instance closed, in order

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s

    async def check(self, ctx: FilterContext) -> Verdict:
        await asyncio.sleep(self.hold_s)
        return Verdict.allow()

    async def aclose(self) -> None:
        Closable.closed.append(self)


class Hanging:
    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        await asyncio.sleep(10)
        return Verdict.allow()


class OwnTimeout:
    """Its own client timed out (a moderation call, say): an error, not its timeout_ms."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        raise TimeoutError("the moderation model did not answer")


class RedactsToNothingSaid:
    """A redact verdict without the new text: malformed."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict("redact", "forgot the text", None)


class WrongReturn:
    stages = ("input",)

    async def check(self, ctx: FilterContext) -> object:
        return "allow"


class Shouting:
    """Upper-cases the text: a redaction that is easy to see in every message."""

    stages = ("input", "output")

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.redact(ctx.text.upper() + self.suffix, "shouting")


class InputOnly:
    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict.allow()


class NotAFilter:
    pass


class BodyCorrupting:
    """Puts a value JSON cannot encode into the request body, then redacts: the
    proxy's own re-encoding then fails, outside any filter's call."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        if isinstance(ctx.body, dict):
            ctx.body["corrupt"] = object()
        return Verdict.redact(ctx.text + " (redacted)", "corrupting")


class AcrossMessages:
    """Redacts "a" that ends one message and "b" that starts the next, without
    saying where: asked again message by message, it finds nothing to place."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        if "a\n\nb" not in ctx.text:
            return Verdict.allow()
        return Verdict.redact(ctx.text.replace("a\n\nb", "[X]"), "across")


class WrongEdits:
    """A redaction whose edits do not give its text."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        return Verdict("redact", "wrong", "something else", edits=(Edit(0, 1, "X"),))


class Recording:
    """Remembers every context it is called with; redacts without edits (so a prompt of
    several messages is asked again message by message): "secret" in a prompt, "shh"
    in an answer."""

    stages = ("input", "output", "stream")
    seen: ClassVar[list[FilterContext]] = []

    async def check(self, ctx: FilterContext) -> Verdict:
        Recording.seen.append(ctx)
        text = ctx.text.replace("secret" if ctx.stage == "input" else "shh", "[S]")
        return Verdict.allow() if text == ctx.text else Verdict.redact(text, "recorded")


class PerMessage:
    """Judges one message at a time: on a prompt of several it redacts without edits,
    so it is asked again per message; then "forbidden" blocks and "erase" empties one."""

    stages = ("input",)

    async def check(self, ctx: FilterContext) -> Verdict:
        if "\n\n" in ctx.text:
            return Verdict.redact(ctx.text + " ", "per message")
        if "forbidden" in ctx.text:
            return Verdict.block("a forbidden message")
        if "erase" in ctx.text:
            return Verdict.redact("", "erased")
        return Verdict.allow()


class Unsettled:
    """Says the last two characters of every partial window may still become a match."""

    stages = ("stream",)
    seen: ClassVar[list[FilterContext]] = []

    async def check(self, ctx: FilterContext) -> Verdict:
        Unsettled.seen.append(ctx)
        return Verdict.allow(unsettled=2 if ctx.partial else None)


class SpinningPerMessage:
    """cpu_bound: spins 5 ms of its thread's CPU on every ask, and redacts "secret"
    without edits (so a prompt of two messages is asked three times), on a worker thread."""

    stages = ("input",)
    cpu_bound = True
    threads: ClassVar[list[str]] = []

    def check_sync(self, ctx: FilterContext) -> Verdict:
        SpinningPerMessage.threads.append(threading.current_thread().name)
        until = time.thread_time() + 0.005
        while time.thread_time() < until:
            pass
        if "forbidden" in ctx.text:
            return Verdict.block("forbidden")
        text = ctx.text.replace("secret", "[S]")
        return Verdict.allow() if text == ctx.text else Verdict.redact(text, "secret")

    async def check(self, ctx: FilterContext) -> Verdict:
        return self.check_sync(ctx)
