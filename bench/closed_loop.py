"""Closed-loop load with wrk: N connections, each sends its next request when answered.

wrk (C, one thread) POSTs the same chat completion over and over; a Lua
``done`` hook prints its latency percentiles in microseconds as one JSON
line, and the run's CPU time comes from wait4()'s rusage of the wrk process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK = "wrk"
BODY = '{"model":"mock-model","messages":[{"role":"user","content":"echo: hello"}]}'

_SCRIPT = """\
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"errors\\": %%d, " ..
    "\\"status_errors\\": %%d, \\"p50_us\\": %%.1f, \\"p90_us\\": %%.1f, " ..
    "\\"p99_us\\": %%.1f, \\"mean_us\\": %%.1f, \\"max_us\\": %%.1f}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    status_errors: int  # responses that were not 2xx/3xx
    cpu_s: float  # wrk's own user + system time

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def write_script(directory: Path, key: str) -> Path:
    path = directory / "post.lua"
    path.write_text(_SCRIPT % {"body": BODY, "key": key})
    return path


def _run(argv: list[str]) -> tuple[str, float]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    # wait4 rather than wait: the rusage is the child's own CPU time.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {output[-500:]}")
    return output, usage.ru_utime + usage.ru_stime


async def run_wrk(
    url: str, script: Path, connections: int, duration_s: int, timeout_s: int = 10
) -> WrkResult:
    """One wrk run against ``url`` + /v1/chat/completions (blocking work in a thread)."""
    argv = [WRK, "-t1", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s}s",
            "--latency", "-s", str(script), f"{url}/v1/chat/completions"]  # fmt: skip
    output, cpu_s = await asyncio.to_thread(_run, argv)
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            return WrkResult(
                requests=data["requests"],
                duration_s=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1e3,
                p90_ms=data["p90_us"] / 1e3,
                p99_ms=data["p99_us"] / 1e3,
                mean_ms=data["mean_us"] / 1e3,
                max_ms=data["max_us"] / 1e3,
                errors=data["errors"],
                status_errors=data["status_errors"],
                cpu_s=cpu_s,
            )
    raise RuntimeError(f"wrk printed no summary: {output[-500:]}")
