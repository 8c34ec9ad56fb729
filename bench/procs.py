"""Child processes of a benchmark run, and what /proc says about them.

Children are started already pinned (the affinity is set in the child
before exec, so every thread they start inherits it), write their output to
files (a full pipe can never stall them), and are paused with SIGSTOP while
another target is measured, so an idle proxy's timers cannot steal its core.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
NOHUP = shutil.which("nohup")
_STARTED: list[Child] = []


@dataclass
class Child:
    """A started child process and the file its output goes to."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _pin(cores: set[int] | None) -> Callable[[], None] | None:
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


async def spawn(
    name: str,
    argv: list[str],
    log: Path,
    cores: set[int] | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` on ``cores`` with stdout and stderr going to ``log``.

    Under nohup: a hangup signal meant for something else must not end a measurement
    (the event loop's spawn resets signal dispositions, so the child cannot be told to
    ignore it directly). A program that handles SIGHUP (taxmeter and nginx reload their
    config) installs its own handler over nohup's.
    """
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *([NOHUP] if NOHUP else []),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=_pin(cores),
        )
    child = Child(name, process, log)
    _STARTED.append(child)
    return child


async def wait_for_line(child: Child, pattern: str, timeout_s: float) -> re.Match[str]:
    """Poll the child's log until a line matches ``pattern``; the match is returned."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = regex.search(child.log.read_text(errors="replace"))
        if match is not None:
            return match
        if child.process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{child.name} did not start:\n{child.tail(10)}")


async def stop(child: Child, timeout_s: float = 10.0) -> None:
    """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL if it lingers."""
    if child.process.returncode is not None:
        return
    resume(child.pid)
    with contextlib.suppress(ProcessLookupError):
        child.process.terminate()
    try:
        await asyncio.wait_for(child.process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
        await child.process.wait()


async def stop_all() -> None:
    """Stop every child this process started, newest first."""
    while _STARTED:
        await stop(_STARTED.pop())


def pause(pid: int) -> None:
    for member in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGSTOP)


def resume(pid: int) -> None:
    for member in tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGCONT)


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot announce port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- /proc ---------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running (or stopped), not exited: a zombie, or no /proc entry, is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def tree(pid: int) -> list[int]:
    """The process and its descendants (a proxy may run worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_cpu_ns(pid: int) -> int:
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_ns(member)
    return total


def cpu_ns(pid: int | str) -> int:
    """CPU time of a process (all threads), in ns.

    The sum of the scheduler's per-thread run time (/proc/PID/task/*/schedstat,
    nanoseconds) when the kernel exposes it; utime + stime from /proc/PID/stat
    (10 ms ticks) otherwise, or when larger (threads that already exited are
    only counted there).
    """
    ticks = stat_cpu_ns(pid)
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return ticks
    return total if total > ticks - 2 * _TICK_NS else ticks


def stat_cpu_ns(pid: int | str) -> int:
    """utime + stime from /proc/PID/stat, in ns."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_NS


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM, the peak resident set size since start or the last reset, summed over the
    process and its descendants."""
    total = None
    for member in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total = (total or 0) + int(line.split()[1])
    return total


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, needs the process's owner or root)."""
    try:
        for member in tree(pid):
            Path(f"/proc/{member}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class CoreTimes:
    """Cumulative jiffies of one core from /proc/stat."""

    busy: int
    total: int
    steal: int


def core_times() -> dict[int, CoreTimes]:
    cores: dict[int, CoreTimes] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *rest = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        values = [int(v) for v in rest[:8]]
        idle = values[3] + values[4]  # idle + iowait
        steal = values[7] if len(values) > 7 else 0
        cores[int(name[3:])] = CoreTimes(sum(values) - idle - steal, sum(values), steal)
    return cores


def busy_fraction(before: dict[int, CoreTimes], after: dict[int, CoreTimes], core: int) -> float:
    """How busy a core was between two readings (0..1; steal counts as not busy)."""
    total = after[core].total - before[core].total
    return (after[core].busy - before[core].busy) / total if total > 0 else float("nan")


def busy_s(before: dict[int, CoreTimes], after: dict[int, CoreTimes]) -> float:
    """CPU seconds all cores were busy between two readings."""
    ticks = sum(after[c].busy - before[c].busy for c in after)
    return ticks * _TICK_NS / 1e9


def steal_fraction(before: dict[int, CoreTimes], after: dict[int, CoreTimes]) -> float:
    total = sum(after[c].total - before[c].total for c in after)
    steal = sum(after[c].steal - before[c].steal for c in after)
    return steal / total if total > 0 else 0.0
