"""The Dockerfile: hadolint clean, the README's install step, and its entrypoint run for real.

Docker cannot run where the tests run, so the image itself is not built here;
the entrypoint and healthcheck scripts it copies in are run directly instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.deploy.manifests import DEPLOY, ROOT
from tests.server.test_serve_cli import read_announcement

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker" / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )


def test_hadolint_finds_nothing() -> None:
    linted = _hadolint(DOCKERFILE)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD taxmeter serve\n")
    linted = _hadolint(bad)
    assert linted.returncode != 0
    assert "DL3007" in linted.stdout  # the :latest tag


def _run_lines(dockerfile: str) -> list[str]:
    """RUN instructions with their continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_install_step_is_the_readmes() -> None:
    (install,) = [run for run in _run_lines(DOCKERFILE.read_text()) if "pip install" in run]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert commands, "README's Install section has no sh block"
    assert install in commands[0].splitlines()


def test_image_runs_as_a_non_root_user_and_exposes_both_ports() -> None:
    text = DOCKERFILE.read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    (user,) = re.findall(r"^USER (\S+)", final_stage, re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^EXPOSE 8080 9464$", final_stage, re.M)
    assert "HEALTHCHECK" in final_stage
    for copied in re.findall(r"^COPY (?!--from)(\S+)", final_stage, re.M):
        assert (ROOT / copied).exists(), copied


async def test_entrypoint_serves_from_the_environment_and_drains_on_sigterm() -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "TAXMETER_CONFIG": str(ROOT / "proxy" / "config" / "default_config.yaml"),
        "TAXMETER_LISTEN": "127.0.0.1:0",
        "TAXMETER_METRICS_LISTEN": "127.0.0.1:0",
        "TAXMETER_LOG_LEVEL": "info",
    }
    process = await asyncio.create_subprocess_exec(
        "sh", str(ENTRYPOINT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        where = await read_announcement(process)
        assert where["filters"] == "denylist (enforce), pii (enforce)"
        health_url = where["metrics"].removesuffix("/metrics") + "/healthz"
        check = await asyncio.create_subprocess_exec(
            sys.executable, str(HEALTHCHECK), env={**env, "TAXMETER_HEALTH_URL": health_url}
        )
        assert await check.wait() == 0
        async with aiohttp.ClientSession() as session:
            body = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(f"{where['proxy']}/v1/chat/completions", json=body) as reply:
                assert reply.status == 200
        # exec: the shell is gone, taxmeter itself gets the signal and exits cleanly.
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    refused = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), env={**env, "TAXMETER_HEALTH_URL": health_url},
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await refused.wait() == 1
