"""The error of a listener that could not open its address."""

from __future__ import annotations

import os

from proxy.config.schema import HostPort


class ListenError(OSError):
    """A listener could not open its address: in use, not this host's, or not permitted.

    An ordinary mistake, not a bug: the command line prints the one line and exits 2.
    Its own module, so the command line can catch it without importing the server.
    """

    def __init__(self, where: HostPort, cause: OSError) -> None:
        # The errno's own words: uvloop's strerror is a sentence repeating the address.
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(cause.errno, f"cannot listen on {where}: {reason}")
        self.where = where

    def __str__(self) -> str:
        return str(self.strerror)
