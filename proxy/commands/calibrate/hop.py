"""A do-nothing loopback hop: a process that echoes every byte it reads, for `calibrate`.

A round trip through it is the least an extra process in the path can cost
on this host (two loopback transits, a wake-up, a read and a write): the
part of a proxy's cost that no clock inside the proxy can see.
"""

from __future__ import annotations

import asyncio

import uvloop


class _Echo(asyncio.Protocol):
    transport: asyncio.WriteTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"taxmeter hop listening on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(_serve())
