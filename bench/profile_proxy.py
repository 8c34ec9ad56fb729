"""Where the proxy's CPU goes: ``taxmeter serve`` under wrk, sampled by py-spy.

    python bench/profile_proxy.py [--config FILE] [--connections 32] [--seconds 10]
                                  [--py-spy PATH] [--raw OUT.txt]

Starts the simulated model server (answering at once) and ``taxmeter serve``
with ``--config`` (default: no filters) on loopback, runs wrk against it for
``--seconds`` (bounded) while ``py-spy record --nonblocking -f raw`` samples
the proxy, and prints each sample charged two ways: to the file of its
innermost frame (who burns the CPU), and to the first frame of taxmeter's own
code on its stack (what of ours asked for it). py-spy is not a dependency of
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
from targets import model_url, start_model, start_taxmeter

NO_FILTERS = "filters: []\nupstream: {url: %s}\n"
_OURS = ("(proxy/", "(filters/")
_ENTRY = ("(proxy/cli.py", "(proxy/__main__.py")  # below every frame: not what asked


def _charge(raw: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples by innermost file, and by the innermost frame of taxmeter's code."""
    inner: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        inner[_file_of(frames[-1])] += count
        mine = next((f for f in reversed(frames) if _ours(f)), None)
        ours[_func_of(mine) if mine else "(no taxmeter frame: the loop, aiohttp)"] += count
    return inner, ours, total


def _ours(frame: str) -> bool:
    return any(p in frame for p in _OURS) and not any(p in frame for p in _ENTRY)


def _file_of(frame: str) -> str:
    # py-spy's raw frames read "function (path:line)".
    where = frame.rsplit("(", 1)[-1].rstrip(")")
    path = where.rsplit(":", 1)[0]
    return path or frame


def _func_of(frame: str) -> str:
    return frame.rpartition(" (")[0] + f" ({_file_of(frame)})"


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
            print(next((line for line in wrk.stdout.splitlines() if "Requests/sec" in line), ""))
            inner, ours, total = _charge(raw)
            _table("by innermost file", inner, total, args.top)
            _table("by innermost taxmeter frame", ours, total, args.top)
        finally:
            await stop_all()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
