"""The proxy benchmark: taxmeter beside nginx, a bare aiohttp proxy and LiteLLM, in one run.

    python bench/run.py [--quick] [--repeats 3] [--only NAME,...] [--skip-litellm]
                        [--out docs/benchmarks.md]

Starts the simulated model server, then every proxy in front of it (each
pinned to the proxy core, paused while another is measured), and runs each
scenario against the model server directly and through every proxy,
repeats interleaved. Writes the results as markdown between the markers in
--out (the rest of the file is kept), and prints them. --only takes target
names (nginx, bare, tm_none, tm_nometrics, tm_traced, tm_sampled,
tm_default, litellm; direct is
always run) and scenario names (c1, c32, sweep, streams_burst,
streams_steady, surfaces, micro, report). ``surfaces`` streams on each API
surface through the default chain (direct and tm_default only); ``report``
times ``taxmeter report`` on a full reservoir (bench/report_time.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import litellm_target
import uvloop
from closed_loop import write_script
from phases import Phase, start_targets
from procs import stop_all
from provenance import Run, this_run
from report_doc import render, write_between_markers
from rig import FOREIGN_LIMIT, Quiet
from scenarios import SURFACE_TITLES, Scenario, closed_loop, streaming
from sweep import Sweep, sweep
from targets import LABELS, nginx_version

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("c1", "c32", "sweep", "streams_burst", "streams_steady", "surfaces", "micro",
             "report")  # fmt: skip
STREAMED = {"streams_burst", "streams_steady", "surfaces"}
STREAMS, TOKENS, TTFT_MS, TOKENS_PER_S = 64, 100, 150.0, 50.0


@dataclass(frozen=True)
class Plan:
    repeats: int
    closed_s: int
    warmup_s: int
    rates: list[float]
    step_s: float
    step_warmup_s: float
    steady_s: float
    quiet_budget_s: float  # the most a run waits, in total, for other work on the host


FULL = Plan(3, 5, 1, [100, 250, 500, 1000, 1500, 2000, 2500, 3000, 4000], 3, 0.5, 8, 480)
QUICK = Plan(1, 2, 1, [500, 1500], 1.5, 0.5, 2.5, 30)


@dataclass
class Results:
    run: Run  # its provenance: the line under every table
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    sweep: Sweep | None = None
    notes: list[str] = field(default_factory=list)
    micro: str = ""
    # For the targets: bench/micro.py's figures ("micro") and report_time.py's ("report").
    figures: dict[str, Any] = field(default_factory=dict)


def _cores() -> tuple[set[int], int, str]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), cores[0], "none (one core: everything shares it)"
    load, proxy = set(cores[:-1]), cores[-1]
    os.sched_setaffinity(0, load)
    names = ", ".join(str(c) for c in sorted(load))
    return load, proxy, (f"the proxy under test alone on core {proxy}; the model server and "
                         f"the load generator (wrk, or this script's Python clients) on core "
                         f"{names}; the other proxies paused (SIGSTOP)")  # fmt: skip


async def run(args: argparse.Namespace, plan: Plan, keys: list[str], wanted: set[str]) -> Results:
    # At the start: what was measured, whatever changes meanwhile.
    results = Results(run=this_run(_what(args.quick, plan.repeats)))
    line = results.run.line()
    load, proxy_core, pinning = _cores()
    results.notes.append(f"pinning: {pinning}")
    litellm_version = "not run"
    if "litellm" in keys:
        try:
            litellm_version = litellm_target.ensure_installed(args.litellm_venv)
        except RuntimeError as exc:
            results.notes.append(f"LiteLLM: not measured: {exc}")
            keys.remove("litellm")
            litellm_version = "not installed"
    with tempfile.TemporaryDirectory(prefix="taxmeter-bench-") as name:
        tmp = Path(name)
        script = write_script(tmp, args.key)
        auth = {"Authorization": f"Bearer {args.key}"}
        quiet = Quiet(plan.quiet_budget_s)
        try:
            if wanted & {"c1", "c32", "sweep"}:
                fast = (0.0, 1e6)
                async with start_targets(tmp, keys, load, proxy_core, fast, args, quiet) as phase:
                    await _fast(phase, plan, wanted, script, auth, results)
                results.notes += phase.notes
            if wanted & STREAMED:
                timing = (TTFT_MS, TOKENS_PER_S)
                async with start_targets(tmp, keys, load, proxy_core, timing, args, quiet) as phase:
                    await _streams(phase, plan, wanted, auth, results)
                results.notes += [n for n in phase.notes if n not in results.notes]
        finally:
            await stop_all()
            _keep_logs(tmp, args.litellm_venv.parent / "last-run-logs")
    results.notes.append(
        f"other work on the host: {quiet.retried} measurement(s) repeated because it used "
        f"over {FOREIGN_LIMIT:.0%} of a core meanwhile; {quiet.waited_s:.0f} s spent waiting "
        f"for it and measuring again (budget {quiet.budget_s:.0f} s)"
    )
    if "micro" in wanted:
        results.micro = _micro(args.quick, proxy_core, line, FiguresFile(results, "micro"))
    if "report" in wanted:
        figures = FiguresFile(results, "report")
        results.micro += "\n" + _report_time(args.quick, proxy_core, line, figures)
    results.notes.insert(0, f"versions: nginx {nginx_version()}, LiteLLM {litellm_version}")
    return results


def _what(quick: bool, repeats: int) -> str:
    return f"{'quick' if quick else 'full'} run, {repeats} repeat{'' if repeats == 1 else 's'}"


async def _fast(
    phase: Phase, plan: Plan, wanted: set[str], script: Path, auth: dict[str, str], out: Results
) -> None:
    for connections in (1, 32):
        if f"c{connections}" in wanted:
            out.scenarios[f"c{connections}"] = await closed_loop(
                phase.rig, phase.order, script, connections, plan.closed_s, plan.warmup_s,
                plan.repeats,
            )  # fmt: skip
    if "sweep" in wanted:
        out.sweep = await sweep(phase.rig, phase.order, plan.rates, plan.step_s,
                                plan.step_warmup_s, plan.repeats, auth)  # fmt: skip


async def _streams(
    phase: Phase, plan: Plan, wanted: set[str], auth: dict[str, str], out: Results
) -> None:
    stream_s = TTFT_MS / 1000 + TOKENS / TOKENS_PER_S
    for mode in ("burst", "steady"):
        if f"streams_{mode}" in wanted:
            out.scenarios[f"streams_{mode}"] = await streaming(
                phase.rig, phase.order, mode, STREAMS, TOKENS, stream_s, plan.steady_s,
                plan.repeats, auth,
            )  # fmt: skip
    if "surfaces" in wanted:
        await _surfaces(phase, plan, auth, out)


async def _surfaces(phase: Phase, plan: Plan, auth: dict[str, str], out: Results) -> None:
    """A burst on each API surface through the default chain, beside direct."""
    stream_s = TTFT_MS / 1000 + TOKENS / TOKENS_PER_S
    order = [k for k in phase.order if k in ("direct", "tm_default")]
    for surface in SURFACE_TITLES:
        scenario = await streaming(
            phase.rig, order, "burst", STREAMS, TOKENS, stream_s, plan.steady_s, plan.repeats,
            auth, surface,
        )  # fmt: skip
        out.scenarios[scenario.key] = scenario


def _keep_logs(tmp: Path, where: Path) -> None:
    """The last run's process logs outlive its temporary directory."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True, exist_ok=True)
    for log in tmp.rglob("*.log"):
        shutil.copy(log, where / log.name)
    print(f"bench: the processes' logs are in {where}")


class FiguresFile:
    """A scratch JSON file a script writes its figures to, then ``results.figures[key]``."""

    def __init__(self, results: Results, key: str) -> None:
        self.results, self.key = results, key
        handle, name = tempfile.mkstemp(prefix=f"taxmeter-bench-{key}-", suffix=".json")
        os.close(handle)
        self.path = Path(name)

    def collect(self) -> None:
        try:
            text = self.path.read_text()
            if text:
                self.results.figures[self.key] = json.loads(text)
        finally:
            self.path.unlink(missing_ok=True)


def _pinned_script(name: str, argv: list[str], core: int, line: str, out: FiguresFile) -> str:
    """Run a bench script pinned to the proxy core; its markdown (under each table the
    run's provenance ``line``), its figures into ``out``."""
    script = [sys.executable, str(Path(__file__).with_name(name)), "--markdown", "--json",
              str(out.path), "--provenance", line, *argv]  # fmt: skip
    done = subprocess.run(
        script, capture_output=True, text=True, timeout=1800,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )  # fmt: skip
    out.collect()
    if done.returncode != 0:
        return f"{name} failed: {done.stderr.strip().splitlines()[-1:]}"
    return done.stdout


def _micro(quick: bool, core: int, line: str, out: FiguresFile) -> str:
    return _pinned_script("micro.py", ["--quick"] if quick else [], core, line, out)


def _report_time(quick: bool, core: int, line: str, out: FiguresFile) -> str:
    return _pinned_script("report_time.py", ["--runs", "1" if quick else "3"], core, line, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 2 minutes")
    parser.add_argument("--repeats", type=int, help="repeats of each scenario (3; --quick: 1)")
    parser.add_argument("--only", help="comma-separated target and scenario names")
    parser.add_argument("--skip-litellm", action="store_true", help="do not run LiteLLM")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--litellm-venv", type=Path, default=litellm_target.default_venv())
    args = parser.parse_args()
    args.key = litellm_target.master_key()
    plan = QUICK if args.quick else FULL
    if args.repeats:
        plan = replace(plan, repeats=args.repeats)
    only = set(args.only.split(",")) if args.only else set()
    unknown = only - set(LABELS) - set(SCENARIOS) - {"streams"}
    if unknown:
        parser.error(f"--only: unknown names {', '.join(sorted(unknown))}")
    if "streams" in only:
        only |= {"streams_burst", "streams_steady"}
    keys = [k for k in LABELS if k == "direct" or not (only & set(LABELS)) or k in only]
    if args.skip_litellm and "litellm" in keys:
        keys.remove("litellm")
    wanted = (only & set(SCENARIOS)) or set(SCENARIOS)
    started = time.monotonic()
    results = uvloop.run(run(args, plan, keys, wanted))
    minutes = (time.monotonic() - started) / 60
    text = render(results.scenarios, results.sweep, results.notes, results.micro, plan.repeats,
                  "quick" if args.quick else "full", minutes, results.figures,
                  run=results.run)  # fmt: skip
    print(text)
    write_between_markers(args.out, text)
    print(f"bench: wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
