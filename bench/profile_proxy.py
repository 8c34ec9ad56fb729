"""Where the proxy's CPU goes: ``taxmeter serve`` under wrk, sampled by py-spy.

    python bench/profile_proxy.py [--config FILE] [--connections 32] [--seconds 10]
                                  [--py-spy PATH] [--raw OUT.txt]

Starts the simulated model server (answering at once) and ``taxmeter serve``
with ``--config`` (default: no filters) on loopback, runs wrk against it for
``--seconds`` (bounded) while ``py-spy record --nonblocking -f raw`` samples
the proxy, and prints each sample charged two ways: to the file of its
innermost frame (who burns the CPU), and to the first frame of taxmeter's own
code on its stack (what of ours asked for it); then, as markdown with the
run's provenance under it, the share of each part of the proxy
(:mod:`profile_shares`), the table docs/benchmarks.md shows. py-spy is not a dependency of
taxmeter: install it beside it (``pip install py-spy``) or pass its path.
Both processes are stopped at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from closed_loop import write_script
from procs import stop_all
from profile_shares import by_file, charge, shares_table
from provenance import this_run
from targets import model_url, start_model, start_taxmeter

NO_FILTERS = "filters: []\nupstream: {url: %s}\n"


def _table(title: str, counter: collections.Counter[str], total: int, top: int) -> None:
    print(f"\n{title}")
    for name, count in counter.most_common(top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {name}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--raw", type=Path, default=None, help="keep py-spy's raw output here")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    what = f"bench/profile_proxy.py, {args.connections} connections, {args.seconds} s"
    line = this_run(what + (f", {args.config.name}" if args.config else ", no filters")).line()
    with tempfile.TemporaryDirectory(prefix="taxmeter-profile-") as scratch:
        tmp = Path(scratch)
        try:
            model = await start_model(tmp, None, 0.0, 1e6)
            upstream = await model_url(model)
            config = tmp / "config.yaml"
            text = args.config.read_text() if args.config else NO_FILTERS % upstream
            if args.config:
                text += f"\nupstream: {{url: {upstream}}}\n"
            config.write_text(text)
            proxy = await start_taxmeter("tm_none", config, tmp, None)
            assert proxy.pid is not None
            script = write_script(tmp, "profile")
            raw = args.raw or tmp / "samples.txt"
            spy = await asyncio.create_subprocess_exec(
                args.py_spy, "record", "--nonblocking", "-r", str(args.rate),
                "-d", str(args.seconds), "-f", "raw", "-o", str(raw), "-p", str(proxy.pid),
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )  # fmt: skip
            wrk = await asyncio.to_thread(
                subprocess.run,
                ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s",
                 str(script), f"{proxy.url}/v1/chat/completions"],
                capture_output=True, text=True, timeout=args.seconds + 30,
            )  # fmt: skip
            await asyncio.wait_for(spy.wait(), args.seconds + 30)
            rate = next((x for x in wrk.stdout.split("\n") if "Requests/sec" in x), "").split()
            inner, ours, total = charge(raw.read_text(errors="replace"))
            print(f"{total} samples; {' '.join(rate) or 'wrk printed no rate'}")
            _table("by innermost file", by_file(inner), total, args.top)
            _table("by innermost taxmeter frame", ours, total, args.top)
            print("\n" + shares_table(inner, line))
        finally:
            await stop_all()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
