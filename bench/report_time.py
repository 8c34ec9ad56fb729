"""How long ``taxmeter report`` takes on a full reservoir: every variant and filter at 10,000.

    python bench/report_time.py [--runs 3] [--resamples 2000] [--markdown] [--json FILE]

Builds a /stats document as a proxy would serve it with every reservoir full
(``Stats().reservoir_size`` requests per variant): the default chain
(denylist, pii), an A/B variant without pii, and an ablation variant per
filter, half of each variant's requests streamed. It serves the document on
loopback and runs ``python -m proxy report --proxy URL --seed 1`` as a user
would, timing the whole process (start-up, fetch, bootstrap, output): the
median (and min) wall time of ``--runs`` runs. Beside it, the report's own
part: the same command run in a process that has imported it already (the
``taxmeter`` command line imports every command, the proxy's included,
before it starts any), from the fetch to the last line printed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from provenance import plain, stamp, this_run

from proxy.measure.stats import COLUMNS, STATS_VERSION, Stats

ROUTES = ("chat_completions", "completions", "responses", "messages")
# name -> (weight, the filter an ablation variant disables, its tax in seconds)
VARIANTS: dict[str, tuple[float, str | None, float]] = {
    "default": (80.0, None, 0.0004),
    "no_pii": (10.0, None, 0.0002),
    "without_denylist": (5.0, "denylist", 0.00039),
    "without_pii": (5.0, "pii", 0.0002),
}
FILTERS = ("denylist", "pii")


def _variant(rng: random.Random, size: int, tax_s: float) -> dict[str, list[Any]]:
    rows = []
    for i in range(size):
        streamed = i % 2 == 1
        upstream = rng.lognormvariate(-1.5, 0.6)
        tax = tax_s * rng.lognormvariate(0, 0.5) + rng.expovariate(1 / 0.0001)
        ttft = rng.lognormvariate(-2.0, 0.3) + tax if streamed else None
        tokens = None if streamed and rng.random() < 0.1 else rng.randrange(1, 400)
        outcome = "blocked" if rng.random() < 0.01 else "ok"
        rows.append((
            ROUTES[i % len(ROUTES)], outcome, upstream + tax, tax, ttft,
            None if ttft is None else tax, tax * 0.6, rng.random() < 0.05,
            rng.random() < 0.002, tokens,
        ))  # fmt: skip
    return {col: list(values) for col, values in zip(COLUMNS, zip(*rows, strict=True), strict=True)}


def full_reservoir(seed: int = 1) -> dict[str, Any]:
    """The /stats document of a proxy whose every reservoir is full."""
    rng = random.Random(seed)
    size = Stats().reservoir_size
    variants = {
        name: {"weight": weight, "requests": size * 3, "samples": _variant(rng, size, tax),
               "ablates": ablates}
        for name, (weight, ablates, tax) in VARIANTS.items()
    }  # fmt: skip
    requests = size * 3 * len(variants)
    filters = {
        name: {"requests": requests, "duration_seconds_sum": requests * 0.0001,
               "cpu_seconds_sum": requests * 0.00008, "cost_usd_sum": 0.0,
               "decisions": {"allow": requests - 100, "block": 100},
               "observed_decisions": {}}
        for name in FILTERS
    }  # fmt: skip
    return {"taxmeter_stats": STATS_VERSION, "reservoir_size": size, "variants": variants,
            "filters": filters}  # fmt: skip


def serve(body: bytes) -> ThreadingHTTPServer:
    """/stats on a loopback port, from a thread; the caller shuts it down. Any
    other path (the report asks /metrics for canaries) is a 404 without a body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/stats"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def time_report(url: str, resamples: int) -> float:
    """Seconds of one ``taxmeter report`` process, start to exit."""
    argv = [sys.executable, "-m", "proxy", "report", "--proxy", url, "--seed", "1",
            "--resamples", str(resamples)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"taxmeter report failed: {done.stderr.strip()}")
    return took


_OWN = """
import sys, time, io, argparse
from proxy.commands.report.command import add_arguments, run
parser = argparse.ArgumentParser()
add_arguments(parser)
args = parser.parse_args(sys.argv[1:])
started = time.perf_counter()
status = run(args, io.StringIO(), sys.stderr)
print(time.perf_counter() - started)
sys.exit(status)
"""


def time_own(url: str, resamples: int) -> float:
    """Seconds of the report's own work: fetch, bootstrap and tables, imports done."""
    argv = [sys.executable, "-c", _OWN, "--proxy", url, "--seed", "1", "--resamples",
            str(resamples)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"taxmeter report failed: {done.stderr.strip()}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--markdown", action="store_true", help="print a markdown section")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--provenance", metavar="LINE",
                        help="the line under the table (default: this commit, today, this "
                             "machine; bench/run.py passes its run's)")  # fmt: skip
    args = parser.parse_args()
    runs = f"{args.runs} run{'' if args.runs == 1 else 's'}"
    line = args.provenance or this_run(f"bench/report_time.py, {runs}").line()
    document = full_reservoir()
    server = serve(json.dumps(document).encode())
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        whole = [time_report(url, args.resamples) for _ in range(args.runs)]
        own = [time_own(url, args.resamples) for _ in range(args.runs)]
    finally:
        server.shutdown()
    size, variants = document["reservoir_size"], len(document["variants"])
    figures = {
        "seconds": statistics.median(whole),
        "own_seconds": statistics.median(own),
        "variants": variants,
        "reservoir_size": size,
        "resamples": args.resamples,
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out)
    rows = {
        "the whole command (`taxmeter report --proxy URL`)": whole,
        "its own work (fetch, bootstrap, tables; the command line's imports done)": own,
    }
    print(section(rows, figures, args.runs, args.markdown, line))


def section(
    rows: dict[str, list[float]], figures: dict[str, Any], runs: int, markdown: bool, line: str
) -> str:
    """The timings (case -> seconds of each run) as markdown, or as lines for a terminal;
    ``line``, the run's provenance, under them."""
    if not markdown:
        text = [f"{name}: median {statistics.median(times):.3f} s, min {min(times):.3f} s"
                for name, times in rows.items()]  # fmt: skip
        return "\n".join([*text, plain(line)])
    lines = [
        f"**`taxmeter report` on a full reservoir** ({figures['variants']} variants of "
        f"{figures['reservoir_size']:,} requests, 2 filters, {figures['resamples']} "
        f"resamples; median (min) of {runs} runs)",
        "",
        "| case | seconds |",
        "|---|---|",
    ]
    lines += [f"| {name} | {statistics.median(times):.3f} ({min(times):.3f}) |"
              for name, times in rows.items()]  # fmt: skip
    return stamp("\n".join(lines), line)


if __name__ == "__main__":
    main()
