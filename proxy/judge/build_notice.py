"""Saying what a slow filter build is doing, so a start that waits on a model is not silent.

A filter whose constructor has not returned after :data:`SLOW_BUILD_S` gets
a line saying it is loading and, once built, one saying how long it took;
the common filters build in microseconds and say nothing. The lines go
where the caller says (the CLI: stderr, so they never mix with what a
command prints on stdout). A filter may say what it loads in a class
attribute ``loads`` (a short phrase: "the all-MiniLM-L6-v2 sentence model");
it knows nothing of who prints it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from filters.base import declared

# Long enough that a filter that builds at once never speaks, short enough
# that nobody wonders whether the command hangs.
SLOW_BUILD_S = 0.5

Notify = Callable[[str], None]


def describe(name: str, type_name: str, cls: type) -> str:
    """``filter 'sg' (semantic_guard: the all-MiniLM-L6-v2 sentence model)``."""
    loads = declared(cls).loads
    detail = f"{type_name}: {loads}" if loads else type_name
    return f"filter {name!r} ({detail})"


@contextmanager
def noticed_if_slow(what: str, notify: Notify | None) -> Iterator[None]:
    """Run the block; if it outlasts SLOW_BUILD_S, ``notify`` hears of it, then of its end.

    The first line comes from a timer thread while the block still runs (it
    holds the caller's thread); a block that raises gets no second line, the
    error says the rest.
    """
    if notify is None:
        yield
        return
    # A console line, not a reported figure: the timeline is for requests.
    started = time.monotonic()
    lock = threading.Lock()
    said = done = False

    def say() -> None:
        nonlocal said
        with lock:
            if not done:
                notify(f"loading {what}...")
                said = True

    timer = threading.Timer(SLOW_BUILD_S, say)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            done = True
        timer.cancel()
    if said:
        notify(f"{what} loaded in {time.monotonic() - started:.1f} s")
