"""What is measured: the model server, and each proxy started in front of it.

A Target is a base URL plus, for a proxy, the process whose CPU and memory
are charged to it. Every proxy is started pinned to the proxy core; the
model server is started on the load core.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from procs import Child, free_port, spawn, wait_for_line

BENCH_DIR = Path(__file__).resolve().parent
_MODEL_STARTS = itertools.count()
NGINX = "/usr/sbin/nginx"

# Rows of every table, in this order; the keys are what --only takes.
LABELS = {
    "direct": "direct (no proxy)",
    "nginx": "nginx",
    "bare": "bare aiohttp",
    "tm_none": "taxmeter (no filters)",
    "tm_nometrics": "taxmeter (no filters, metrics off)",
    "tm_traced": "taxmeter (no filters, tracing on)",
    "tm_sampled": "taxmeter (no filters, tracing 1% sampled)",
    "tm_default": "taxmeter (default chain)",
    "litellm": "LiteLLM",
}


@dataclass
class Target:
    key: str
    url: str
    child: Child | None = None  # None: the model server itself
    notes: list[str] = field(default_factory=list)
    metrics_url: str | None = None  # taxmeter with metrics on: its /metrics

    @property
    def label(self) -> str:
        return LABELS[self.key]

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.pid


async def start_model(
    tmp: Path,
    cores: set[int] | None,
    ttft_ms: float,
    tokens_per_s: float,
    listen: str = "127.0.0.1:0",
) -> Child:
    """The simulated model server; its URL is :func:`model_url`."""
    argv = [sys.executable, "-m", "proxy", "mock-upstream", "--listen", listen,
            "--ttft-ms", f"{ttft_ms:g}", "--tokens-per-s", f"{tokens_per_s:g}",
            "--max-tokens", "100"]  # fmt: skip
    log = tmp / f"model-{ttft_ms:g}-{next(_MODEL_STARTS)}.log"
    child = await spawn("model server", argv, log, cores)
    await wait_for_line(child, r"listening on (http://\S+)$", 30)
    return child


async def model_url(child: Child) -> str:
    return (await wait_for_line(child, r"listening on (http://\S+)$", 1)).group(1)


# -- nginx -----------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream model {{
        server {upstream};
        keepalive 32;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def nginx_version() -> str:
    try:
        done = subprocess.run([NGINX, "-v"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return done.stderr.strip().rsplit("/", 1)[-1] or "unknown"


async def start_nginx(tmp: Path, upstream: str, cores: set[int] | None) -> Target:
    home = tmp / "nginx"
    home.mkdir(exist_ok=True)
    port = free_port()
    conf = home / "nginx.conf"
    hostport = upstream.removeprefix("http://").rstrip("/")
    conf.write_text(NGINX_CONF.format(tmp=home, upstream=hostport, port=port))
    argv = [NGINX, "-c", str(conf), "-p", str(home), "-e", str(home / "nginx-error.log")]
    child = await spawn("nginx", argv, tmp / "nginx.log", cores)
    url = f"http://127.0.0.1:{port}"
    await _wait_http(child, url)
    return Target("nginx", url, child)


async def _wait_http(child: Child, url: str, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if child.process.returncode is not None:
                break
            try:
                async with session.get(f"{url}/v1/models") as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer at {url}:\n{child.tail(10)}")


# -- the Python proxies ------------------------------------------------------------


async def start_bare(tmp: Path, upstream: str, cores: set[int] | None) -> Target:
    argv = [sys.executable, str(BENCH_DIR / "bare_proxy.py"), "--upstream", upstream]
    child = await spawn("bare aiohttp proxy", argv, tmp / "bare.log", cores)
    match = await wait_for_line(child, r"listening on (http://\S+)$", 30)
    return Target("bare", match.group(1), child)


def taxmeter_config(key: str, upstream: str) -> dict[str, Any]:
    """The config of each taxmeter row: no filters, or the packaged default chain."""
    if key == "tm_default":
        text = resources.files("proxy.config").joinpath("default_config.yaml").read_text("utf-8")
        config: dict[str, Any] = yaml.safe_load(text)
        config.pop("listen", None)
        config.pop("metrics_listen", None)
    else:
        config = {"filters": []}
    if key == "tm_nometrics":
        config["telemetry"] = {"metrics": False}
    config["upstream"] = {"url": upstream}
    return config


def check_config(tmp: Path, key: str, upstream: str) -> tuple[Path, str | None]:
    """Write the row's config; the reason ``taxmeter check-config`` refuses it, if it does."""
    path = tmp / f"{key}.yaml"
    path.write_text(yaml.safe_dump(taxmeter_config(key, upstream), sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        return path, (done.stderr or done.stdout).strip().splitlines()[-1]
    return path, None


async def start_otlp_sink(tmp: Path, cores: set[int] | None) -> tuple[Child, str]:
    """The trace receiver of the "tracing on" row, on the load core."""
    argv = [sys.executable, str(BENCH_DIR / "otlp_sink.py")]
    child = await spawn("OTLP sink", argv, tmp / "otlp-sink.log", cores)
    match = await wait_for_line(child, r"listening on (http://\S+)$", 30)
    return child, match.group(1)


# The tracing rows: every request sampled, or 1% of them (a common production setting).
TRACED = {"tm_traced": ("always_on", ""), "tm_sampled": ("parentbased_traceidratio", "0.01")}


def tracing_env(key: str, sink: str) -> dict[str, str]:
    """Spans exported over OTLP/HTTP with the SDK's batch defaults, sampled as the row says."""
    sampler, argument = TRACED[key]
    return {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": sampler,
        "OTEL_TRACES_SAMPLER_ARG": argument,
        "OTEL_SERVICE_NAME": "taxmeter-bench",
    }


async def start_taxmeter(
    key: str, config: Path, tmp: Path, cores: set[int] | None, env: dict[str, str] | None = None
) -> Target:
    argv = [sys.executable, "-m", "proxy", "serve", "--config", str(config),
            "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]  # fmt: skip
    child = await spawn(LABELS[key], argv, tmp / f"{key}.log", cores, env=env)
    await wait_for_line(child, r"^taxmeter: filters", 60)
    proxy = await wait_for_line(child, r"^taxmeter: proxy\s+(http://\S+)", 1)
    target = Target(key, proxy.group(1), child)
    metrics = await wait_for_line(child, r"^taxmeter: metrics\s+(.*)$", 1)
    target.notes.append(f"metrics: {metrics.group(1).strip()}")
    if key != "tm_nometrics":
        target.metrics_url = metrics.group(1).strip()
    return target
