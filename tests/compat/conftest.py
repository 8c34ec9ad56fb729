"""LiteLLM's proxy, from PyPI in its own venv, as the model server behind taxmeter.

`make test` installs ``litellm[proxy]`` into ``.venv-litellm`` (or the venv
named by ``TAXMETER_LITELLM_VENV``). LiteLLM runs as users run it: one
worker, a config file, a master key, no telemetry. It serves two models:
``echo``, routed to the simulated model server (which answers a prompt
starting with ``echo:`` with the rest of it, so what LiteLLM was sent comes
back), and ``mail``, LiteLLM's own ``mock_response`` answering with an
e-mail address.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.proxy.conftest import model, start_proxy

__all__ = ["model", "start_proxy"]

ROOT = Path(__file__).resolve().parents[2]
ANSWER_EMAIL = "jane.doe@example.com"
MAIL_ANSWER = f"Write to {ANSWER_EMAIL} today, or call back."
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class LiteLLM:
    url: str
    key: str


def _venv() -> Path:
    # A relative path is the checkout's (make passes one); LiteLLM runs in a temporary dir.
    return ROOT / os.environ.get("TAXMETER_LITELLM_VENV", ".venv-litellm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_live(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"{url} did not come up:\n{tail}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="session")
def simulated_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "proxy", "mock-upstream", "--listen", f"127.0.0.1:{port}",
                "--ttft-ms", "5", "--tokens-per-s", "2000"]  # fmt: skip
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(f"{url}/health", process, log)
        yield url
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def litellm(simulated_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLM]:
    binary = _venv() / "bin" / "litellm"
    if not binary.exists():
        pytest.fail(f"LiteLLM is not installed at {binary}: run `make test`, which installs it")
    tmp = tmp_path_factory.mktemp("litellm")
    key = "sk-compat-" + secrets.token_hex(16)
    backend = {"api_base": f"{simulated_model}/v1", "api_key": "unused-by-the-simulator"}
    config = {
        "model_list": [
            {"model_name": "echo", "litellm_params": {"model": "openai/mock-model", **backend}},
            {"model_name": "mail", "litellm_params": {"model": "openai/mock-model", **backend,
                                                      "mock_response": MAIL_ANSWER}},
        ],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": key},
    }  # fmt: skip
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = _free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # its bundled cost map: no download
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = tmp / "litellm.log"
    with log.open("wb") as out:
        argv = [str(binary), "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", "1"]  # fmt: skip
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(f"{url}/health/liveliness", process, log)
        yield LiteLLM(url, key)
    finally:
        _stop(process)
