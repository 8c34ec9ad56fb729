"""A new user's first hour: ordinary mistakes get one line and exit 2, never a traceback.

Each test runs the installed ``taxmeter`` console script as a user would, in a
real process (not ``python -m proxy``, which puts the current directory on
sys.path itself and so would hide the import-path trap).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAXMETER = Path(sys.executable).with_name("taxmeter")


def taxmeter(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if os.environ.get("PYTHONPATH"):
        # The checkout under test, when it is not the one installed; never the cwd.
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [str(TAXMETER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if lines[0].startswith("usage: "):  # argparse's: the usage, then its one-line error
        lines = [line for line in lines if not line.startswith(("usage: ", " "))]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serve_on_a_busy_port_says_so_in_one_line(busy_port: int) -> None:
    done = taxmeter(
        "serve", "--listen", f"127.0.0.1:{busy_port}", "--metrics-listen", "127.0.0.1:0"
    )
    assert one_clean_line(done) == (
        f"taxmeter: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )


def test_a_busy_metrics_port_is_named_too(busy_port: int) -> None:
    done = taxmeter(
        "serve", "--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{busy_port}"
    )
    assert one_clean_line(done).endswith(f"127.0.0.1:{busy_port}: Address already in use")


def test_serve_with_workers_on_a_busy_port(busy_port: int) -> None:
    done = taxmeter(
        "serve", "--workers", "2", "--listen", f"127.0.0.1:{busy_port}",
        "--metrics-listen", "127.0.0.1:0",
    )  # fmt: skip
    assert one_clean_line(done).endswith(f"127.0.0.1:{busy_port}: Address already in use")


def test_mock_upstream_on_a_busy_port(busy_port: int) -> None:
    done = taxmeter("mock-upstream", "--listen", f"127.0.0.1:{busy_port}")
    assert one_clean_line(done) == (
        f"taxmeter: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )


def test_an_address_not_of_this_host() -> None:
    done = taxmeter("mock-upstream", "--listen", "192.0.2.1:8000")  # TEST-NET-1
    assert one_clean_line(done) == (
        "taxmeter: cannot listen on 192.0.2.1:8000: Cannot assign requested address"
    )


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    line = one_clean_line(taxmeter("serve", "--log-level", "loud"))
    assert "unknown level 'loud'" in line
    assert "debug, info, warning, error, critical" in line


def test_version() -> None:
    done = taxmeter("--version")
    assert done.returncode == 0
    assert re.fullmatch(r"taxmeter \d+\.\d+\.\d+\S*\n", done.stdout)


def test_check_config_takes_the_file_either_way(tmp_path: Path) -> None:
    config = tmp_path / "taxmeter.yaml"
    config.write_text("filters: []\n")
    for args in (("check-config", str(config)), ("check-config", "--config", str(config))):
        done = taxmeter(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{config}: ok (no filters;")
    assert one_clean_line(taxmeter("check-config")).startswith("taxmeter check-config: error:")


README_FILTER = re.compile(r"```python\n# acme_guard.py\n(.*?)```", re.S)
README_CONFIG = re.compile(r"```yaml\n(filters:\n  - name: no_shouting\n.*?)```", re.S)


def test_the_readme_custom_filter_imports_from_the_current_directory(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    filter_code, config = README_FILTER.search(readme), README_CONFIG.search(readme)
    assert filter_code, "the README's custom filter example moved"
    assert config, "the README's custom filter config moved"
    (tmp_path / "acme_guard.py").write_text(filter_code.group(1))
    (tmp_path / "shout.yaml").write_text(config.group(1))
    done = taxmeter("check-config", "shout.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no_shouting" in done.stdout


def test_a_module_in_the_current_directory_never_shadows_an_installed_one(tmp_path: Path) -> None:
    (tmp_path / "filters.py").write_text("raise SystemExit('shadowed')\n")
    (tmp_path / "c.yaml").write_text(
        "filters: [{name: d, type: denylist, params: {words: [secret]}}]\n"
    )
    done = taxmeter("check-config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_file_in_the_current_directory_runs_only_when_the_config_names_it(
    tmp_path: Path,
) -> None:
    # Modules taxmeter's libraries try and do without when they are not installed: a
    # file of such a name where taxmeter is started (a shared directory) must not run.
    absent = [name for name in ("aiodns", "brotli", "brotlicffi") if find_spec(name) is None]
    if not absent:
        pytest.skip("every optional module probed here is installed")
    ran = tmp_path / "ran"
    for name in absent:
        (tmp_path / f"{name}.py").write_text(f"open({str(ran)!r}, 'a').write({name!r})\n")
    (tmp_path / "c.yaml").write_text(
        "filters: [{name: d, type: denylist, params: {words: [secret]}}]\n"
    )
    done = taxmeter("check-config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not ran.exists(), f"a file of the current directory ran: {ran.read_text()}"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "https://api.example.com/openai/v1/"])
def test_an_upstream_url_ending_in_v1_is_refused_with_the_fix(tmp_path: Path, url: str) -> None:
    base = url.rstrip("/").removesuffix("/v1")
    config = tmp_path / "c.yaml"
    config.write_text(f"upstream: {{url: '{url}'}}\nfilters: []\n")
    line = one_clean_line(taxmeter("check-config", str(config)))
    assert line.startswith("taxmeter: config error: upstream.url: ")
    assert f"use '{base}'" in line
    line = one_clean_line(taxmeter("serve", "--upstream", url, "--listen", "127.0.0.1:0"))
    assert line.startswith("taxmeter: config error: --upstream: ")
    assert f"use '{base}'" in line


def test_mock_upstream_help_gives_every_default() -> None:
    done = taxmeter("mock-upstream", "--help")
    assert done.returncode == 0
    description, _, text = " ".join(done.stdout.split()).partition(" options: ")
    assert "no /v1" in description  # the warning not to add it
    for option in ("--listen", "--ttft-ms", "--tokens-per-s", "--max-tokens", "--model"):
        described = text.split(option, 1)[1].split(" --", 1)[0]
        assert "(default: " in described, (option, described)


def test_the_mock_banner_offers_no_v1_url() -> None:
    process = subprocess.Popen(
        [str(TAXMETER), "mock-upstream", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert re.search(r"listening on http://127\.0\.0\.1:\d+$", banner.strip()), banner
    assert "/v1 " not in banner
    assert not banner.strip().endswith("/v1")
    assert "base_url http" not in banner


def test_the_readme_config_error_example_is_the_real_message(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "filters:\n  - {name: d, type: denylist}\n  - {name: p, type: pii, timeout_ms: fast}\n"
    )
    done = taxmeter("check-config", str(config))
    line = one_clean_line(done)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"`{line}`" in readme, line


def test_the_package_builds_without_warnings_and_carries_its_data(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "BuildBackendWarning" not in done.stdout + done.stderr
    (wheel,) = tmp_path.glob("taxmeter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "proxy/datasets/prompts.jsonl",
        "proxy/config/default_config.yaml",
        "filters/data/semantic_guard_attacks.txt",
        "filters/data/semantic_guard_allow.txt",
        "proxy/py.typed",
        "filters/py.typed",
    ):
        assert data in names, data


def test_the_upstream_url_is_shown_without_its_secrets(busy_port: int) -> None:
    # A closed port: serve warns, and its start-up lines still name the model server.
    url = f"http://user:hunter2@127.0.0.1:{busy_port + 1}?api_key=hunter3"
    process = subprocess.Popen(
        [str(TAXMETER), "serve", "--upstream", url, "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("taxmeter: filters"):
                break
    finally:
        process.terminate()
        process.wait(timeout=20)
    shown = "".join(lines)
    assert f"taxmeter: model    http://127.0.0.1:{busy_port + 1}" in shown, shown
    assert "hunter" not in shown


def test_a_filter_that_fails_to_build_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "needs_file.py").write_text(
        "class NeedsFile:\n"
        "    stages = ('input',)\n"
        "    def __init__(self, path: str = 'absent.txt') -> None:\n"
        "        open(path)\n"
        "    async def check(self, ctx):\n"
        "        raise AssertionError\n"
    )
    (tmp_path / "c.yaml").write_text("filters: [{name: nf, type: 'needs_file:NeedsFile'}]\n")
    for command in (
        ("check-config", "c.yaml"),
        (
            "serve",
            "--config",
            "c.yaml",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ),
    ):
        line = one_clean_line(taxmeter(*command, cwd=tmp_path))
        assert line == (
            "taxmeter: config error: filters[0]: filter 'nf' could not be built: "
            "FileNotFoundError: [Errno 2] No such file or directory: 'absent.txt'"
        ), line
