"""What large request bodies cost the proxy in memory: peak RSS per byte of body.

    python bench/large_bodies.py [--bodies 10] [--mb 30] [--route judged|passed]

Starts a fresh ``taxmeter serve`` on loopback (a denylist on the input, the
simulated model server behind it), sends ``--bodies`` chat requests of
``--mb`` MB each at once, and reports the proxy process's peak RSS
(``VmHWM``) above what it was before, divided by the bytes sent: 1.0 would
be one copy of every body held at once. ``--route passed`` sends them to a
route the proxy forwards without judging. Loopback only; sizes are capped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idle_clients import start_proxy

MAX_TOTAL_MB = 600
CONFIG = """
max_body_bytes: 67108864
filters:
  - name: denylist
    type: denylist
    stages: [input]
    params: {words: [ignore all previous instructions]}
"""


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


async def post(host: str, port: int, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST %b HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body))
    )
    writer.write(body)
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])


async def main(args: argparse.Namespace) -> None:
    if args.bodies * args.mb > MAX_TOTAL_MB:
        raise SystemExit(f"at most {MAX_TOTAL_MB} MB in all")
    text = ("the quick brown fox jumps over the lazy dog " * (args.mb * 25_000))[: args.mb * 10**6]
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
    path = "/v1/chat/completions" if args.route == "judged" else "/v1/files"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        config.write(CONFIG)
        config.flush()
        process, host, port = await start_proxy(config.name)
        try:
            await post(host, port, path, b"{}")  # warm: the upstream pool, the first parse
            before = status_kib(process.pid, "VmHWM")
            statuses = await asyncio.gather(
                *(post(host, port, path, body) for _ in range(args.bodies))
            )
            peak = status_kib(process.pid, "VmHWM")
        finally:
            process.terminate()
            await process.wait()
    sent = args.bodies * len(body)
    mb = len(body) / 1e6
    print(f"bodies {args.bodies} x {mb:.1f} MB to {path}: statuses {sorted(set(statuses))}")
    print(f"peak RSS {before / 1024:.0f} -> {peak / 1024:.0f} MiB; "
          f"{(peak - before) * 1024 / sent:.2f} x the bytes sent")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=10)
    parser.add_argument("--mb", type=int, default=30)
    parser.add_argument("--route", choices=("judged", "passed"), default="judged")
    asyncio.run(main(parser.parse_args()))
