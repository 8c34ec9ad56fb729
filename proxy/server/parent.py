"""A child process that must not outlive the process that started it.

The parent gives the child a pipe as its stdin and never writes to it. When
the parent ends, however it ends (SIGKILL and out-of-memory included), the
kernel closes its end, the child reads the end of the file and stops as if
told to. Used by the embedded model server and by ``--workers``' workers,
which would otherwise keep serving on the port with nobody to stop them.
"""

from __future__ import annotations

import asyncio
import os
import sys


def stop_when_parent_ends(stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin, a pipe from the parent, reaches its end."""
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(stdin, 4096):  # end of file: the parent's end is closed
            loop.remove_reader(stdin)
            stop.set()

    loop.add_reader(stdin, readable)
