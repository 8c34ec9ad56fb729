"""LiteLLM's proxy from PyPI, in its own venv, in front of the same model server.

The venv lives outside the repository (``$XDG_CACHE_HOME/taxmeter-bench``,
by default ``~/.cache/taxmeter-bench``) and is created on first use with
``pip install 'litellm[proxy]'``. LiteLLM is run as users run it: one
uvicorn worker, a config with one model, a master key (it refuses to start
without one), its bundled model cost map and no telemetry, so it never
reaches for the internet.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml
from procs import free_port, spawn, stop
from targets import Target

INSTALL_TIMEOUT_S = 1200
START_TIMEOUT_S = 180


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "taxmeter-bench" / "litellm-venv"


def ensure_installed(venv: Path) -> str:
    """The installed LiteLLM version; installs it first if needed. Raises RuntimeError."""
    version = installed_version(venv)
    if version is not None:
        return version
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "litellm-install.log"
    print(f"bench: installing litellm[proxy] into {venv} (log: {log})")
    with log.open("w") as out:
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)],
                           check=True, stdout=out, stderr=out, timeout=300)  # fmt: skip
            pip = [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
            subprocess.run(pip, check=True, stdout=out, stderr=out, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"pip install 'litellm[proxy]' failed: {exc}") from exc
    version = installed_version(venv)
    if version is None:
        raise RuntimeError("litellm installed, but its version cannot be read")
    return version


def installed_version(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not (python.exists() and (venv / "bin" / "litellm").exists()):
        return None
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip() or None if done.returncode == 0 else None


def master_key() -> str:
    return "sk-bench-" + secrets.token_hex(24)


async def start_litellm(
    venv: Path, tmp: Path, upstream: str, key: str, cores: set[int] | None
) -> Target:
    config = {
        "model_list": [
            {
                "model_name": "mock-model",
                "litellm_params": {
                    "model": "openai/mock-model",
                    "api_base": f"{upstream.rstrip('/')}/v1",
                    "api_key": "unused-by-the-mock",
                },
            }
        ],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": key},
    }
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "DISABLE_ADMIN_UI": "True",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    argv = [str(venv / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]  # fmt: skip
    child = await spawn("LiteLLM", argv, tmp / "litellm.log", cores, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline and child.process.returncode is None:
            try:
                async with session.get(f"{url}/health/liveliness") as response:
                    if response.status == 200:
                        return Target("litellm", url, child)
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    await stop(child)
    raise RuntimeError(f"LiteLLM did not become live at {url}:\n{child.tail(10)}")
