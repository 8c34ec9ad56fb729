"""An OTLP/HTTP trace receiver for the benchmark: it counts spans and drops them.

The "tracing on" row exports every request's spans here, so the proxy pays
the whole price of tracing (span building, the batch processor's thread,
protobuf encoding, the HTTP export) while the receiver runs on the load core.

    python bench/otlp_sink.py [--listen 127.0.0.1:0]

Prints one line once listening; its last word is the receiver's URL.
GET /count answers with the spans and export requests received so far.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SPANS = web.AppKey("spans", list)
_OK = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    export = ExportTraceServiceRequest.FromString(await request.read())
    spans = sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
    counts = request.app[SPANS]
    counts[0] += spans
    counts[1] += 1
    return web.Response(body=_OK, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    spans, exports = request.app[SPANS]
    return web.json_response({"spans": spans, "exports": exports})


async def main(listen: str) -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SPANS] = [0, 0]
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = listen.rsplit(":", 1)
    site = web.TCPSite(runner, host, int(port))
    await site.start()
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    print(f"otlp sink listening on http://{bound[0]}:{bound[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    uvloop.run(main(parser.parse_args().listen))
