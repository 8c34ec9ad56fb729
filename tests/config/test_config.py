"""Config validation: every bad key is named; the CLI exits 2 on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.schema import Config, ConfigError, HostPort, load_config, parse_config
from proxy.judge.build import build_chains, build_filters

PLUGINS = "tests.judge.sample_filters"


def validate(raw: Any) -> Config:
    config = parse_config(raw)
    build_chains(config, build_filters(config))
    return config


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ([], "", "expected a mapping"),
        ({"lisen": "1.2.3.4:1"}, "lisen", "unknown key"),
        ({"listen": "localhost"}, "listen", "HOST:PORT"),
        ({"listen": "127.0.0.1:70000"}, "listen", "0 to 65535"),
        ({"metrics_listen": 9464}, "metrics_listen", "HOST:PORT"),
        ({"upstream": "http://x"}, "upstream", "expected a mapping"),
        ({"upstream": {"url": "ftp://x"}}, "upstream.url", "http://"),
        ({"upstream": {"read_timeout": 3}}, "upstream.read_timeout", "unknown key"),
        ({"upstream": {"connect_timeout_s": "5"}}, "upstream.connect_timeout_s", "number"),
        ({"upstream": {"total_timeout_s": 0}}, "upstream.total_timeout_s", "> 0"),
        ({"upstream": {"max_connections": True}}, "upstream.max_connections", "whole number"),
        ({"filters": {"pii": {}}}, "filters", "list"),
        ({"filters": ["pii"]}, "filters[0]", "mapping"),
        ({"filters": [{"type": "pii", "colour": 1}]}, "filters[0].colour", "unknown key"),
        ({"filters": [{"type": "pii"}, {"type": "pii"}]}, "filters[1].name", "duplicate"),
        ({"filters": [{"name": "a b", "type": "pii"}]}, "filters[0].name", "letters"),
        ({"filters": [{"name": "x"}]}, "filters[0].type", "unknown filter type 'x'"),
        ({"filters": [{"type": "pii", "mode": "strict"}]}, "filters[0].mode", "enforce"),
        ({"filters": [{"type": "pii", "on_error": "maybe"}]}, "filters[0].on_error", "open"),
        ({"filters": [{"type": "pii", "timeout_ms": -1}]}, "filters[0].timeout_ms", "> 0"),
        ({"filters": [{"type": "pii", "stages": ["inbound"]}]}, "filters[0].stages", "input"),
        ({"filters": [{"type": "pii", "stages": []}]}, "filters[0].stages", "at least one"),
        ({"filters": [{"type": "pii", "params": []}]}, "filters[0].params", "mapping"),
        ({"filters": [{"type": "pii", "params": {"action": "shred"}}]},
         "filters[0].params", "action"),
        ({"filters": [{"type": "pii", "params": {"colour": 1}}]},
         "filters[0].params", "colour"),
        ({"filters": [{"type": "denylist", "params": {"patterns": ["("]}}]},
         "filters[0].params", "("),
        ({"filters": [{"type": "pii", "params": {"normalize": "no"}}]},
         "filters[0].params", "normalize: expected true or false"),
        ({"filters": [{"type": "denylist", "params": {"words": ["x"], "normalize": 0}}]},
         "filters[0].params", "normalize: expected true or false"),
        ({"filters": [{"type": "denylist", "params": {"words": ["\u200b\u00ad"]}}]},
         "filters[0].params", "words: entries must not be empty or blank"),
        ({"filters": [{"type": "synthetic", "params": {"wall_ms": -5}}]},
         "filters[0].params", "wall_ms"),
        ({"filters": [{"type": f"{PLUGINS}:Shouting"}]}, "filters[0].name", "import path"),
        ({"filters": [{"name": "n", "type": f"{PLUGINS}:NotAFilter"}]},
         "filters[0].type", "stages"),
        ({"filters": [{"name": "n", "type": f"{PLUGINS}:Missing"}]},
         "filters[0].type", "has no 'Missing'"),
        ({"filters": [{"name": "n", "type": "no_such_module:X"}]},
         "filters[0].type", "cannot import"),
        ({"filters": [{"name": "n", "type": f"{PLUGINS}:InputOnly", "stages": ["output"]}]},
         "filters[0].stages", "does not support the output stage"),
        ({"filters": [{"type": "pii", "parallel": "yes"}]}, "filters[0].parallel", "true or false"),
        ({"filters": [{"type": "pii", "stages": ["output"], "parallel": True}]},
         "filters[0].parallel", "input stage only"),
        ({"filters": [{"type": "pii", "stages": ["input"], "at_stream_end": True}]},
         "filters[0].at_stream_end", "output stage only"),
        ({"filters": [{"type": "pii", "stream": 5}]}, "filters[0].stream", "mapping"),
        ({"filters": [{"type": "pii", "stream": {"bogus": 1}}]},
         "filters[0].stream.bogus", "unknown key"),
        ({"filters": [{"type": "pii", "stream": {"every_tokens": 1, "every_chars": 3}}]},
         "filters[0].stream", "set one of"),
        ({"filters": [{"type": "pii", "stream": {"window_chars": 0}}]},
         "filters[0].stream.window_chars", "whole number"),
        ({"filters": [{"type": "pii", "stream": {"holdback_chars": 600}}]},
         "filters[0].stream.holdback_chars", "smaller than window_chars"),
        ({"filters": [{"type": "pii", "stream": {"at_sentence_end": 1}}]},
         "filters[0].stream.at_sentence_end", "true or false"),
        ({"filters": [{"type": "pii", "observe_inline": 1}]},
         "filters[0].observe_inline", "true or false"),
        ({"assignment": {"sticky": "cookie:x"}}, "assignment.sticky", "header:NAME"),
        ({"assignment": {"sticky": "header:"}}, "assignment.sticky", "header:NAME"),
        ({"assignment": {"expose": "yes"}}, "assignment.expose", "true or false"),
        ({"assignment": {"sticky_key": "x"}}, "assignment.sticky_key", "unknown key"),
        ({"admin": {"listen": "nowhere"}}, "admin.listen", "HOST:PORT"),
        ({"admin": {"token_env": "A B"}}, "admin.token_env", "variable name"),
        ({"admin": {"token": "x"}}, "admin.token", "unknown key"),
        ({"stats_reservoir_size": 0}, "stats_reservoir_size", "whole number"),
        ({"telemetry": {"metrics": "off"}}, "telemetry.metrics", "true or false"),
        ({"telemetry": {"traces": True}}, "telemetry.traces", "unknown key"),
        ({"telemetry": {"access_log": 1}}, "telemetry.access_log", "string"),
        ({"telemetry": {"access_log_sample": 2}}, "telemetry.access_log_sample", "0 to 1"),
        ({"telemetry": {"trace_content": "yes"}}, "telemetry.trace_content", "true or false"),
        ({"variants": {}}, "variants", "at least one"),
        ({"variants": {"a": {"weight": -1}}}, "variants.a.weight", ">= 0"),
        ({"variants": {"a": {"weight": 0}}}, "variants", "add up to 0"),
        ({"variants": {"a": {"disable": ["ghost"]}}}, "variants.a.disable", "ghost"),
        ({"variants": {"a": {"modes": {"ghost": "off"}}}}, "variants.a.modes", "ghost"),
        ({"filters": [{"type": "pii"}], "variants": {"a": {"modes": {"pii": "loud"}}}},
         "variants.a.modes.pii", "enforce"),
        ({"variants": {"a": {"share": 3}}}, "variants.a.share", "unknown key"),
        ({"max_body_bytes": "1MB"}, "max_body_bytes", "whole number"),
        ({"readiness": True}, "readiness", "expected a mapping"),
        ({"readiness": {"upstream": "yes"}}, "readiness.upstream", "true or false"),
        ({"readiness": {"interval_s": 0}}, "readiness.interval_s", "> 0"),
        ({"readiness": {"timeout_s": "1s"}}, "readiness.timeout_s", "number"),
        ({"readiness": {"model": True}}, "readiness.model", "unknown key"),
    ],
)  # fmt: skip
def test_bad_config_names_the_key(raw: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"{key}: ") or not key
    assert fragment in message


def test_every_key_of_the_documented_example_is_accepted() -> None:
    config = validate(
        yaml.safe_load(
            """
            listen: 0.0.0.0:8080
            metrics_listen: "[::1]:9464"
            upstream:
              url: http://127.0.0.1:8000/
              connect_timeout_s: 5
              read_timeout_s: 300
              total_timeout_s: 600
              max_connections: 100
            filters:
              - name: pii
                type: pii
                stages: [input, output, stream]
                mode: enforce
                timeout_ms: 100
                on_error: open
                parallel: false
                at_stream_end: true
                stream:
                  every_chars: 16
                  window_chars: 256
                  holdback_chars: 32
                params: {}
            variants:
              default: {weight: 90}
              no_pii: {weight: 10, disable: [pii]}
            assignment:
              sticky: header:x-user-id
              salt_env: TAXMETER_SALT
              allow_override: true
              expose: true
            admin:
              listen: 127.0.0.1:9465
              token_env: TAXMETER_ADMIN_TOKEN
            stats_reservoir_size: 500
            readiness:
              upstream: false
              interval_s: 5
              timeout_s: 0.5
            """
        )
    )
    assert (config.readiness.upstream, config.readiness.interval_s) == (False, 5.0)
    assert config.readiness.timeout_s == 0.5
    assert config.listen == HostPort("0.0.0.0", 8080)
    assert config.metrics_listen == HostPort("::1", 9464)
    assert config.upstream.url == "http://127.0.0.1:8000"
    assert [v.name for v in config.variants] == ["default", "no_pii"]
    assert config.assignment.sticky_header == "x-user-id"
    assert config.admin is not None
    assert config.admin.port == 9465


def test_the_built_in_default_config_is_denylist_and_pii() -> None:
    config = load_config(None)
    validate({})  # an empty file is valid too
    assert [f.name for f in config.filters] == ["denylist", "pii"]
    assert config.upstream.url is None
    # Readiness reflects the model server unless the config says otherwise.
    assert (config.readiness.upstream, config.readiness.interval_s) == (True, 2.0)
    assert validate({"readiness": None}).readiness == config.readiness


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("filters:\n  - {name: pii, type: pii}\n")
    done = run_cli("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  - {name: pii, type: pii, timeout_ms: fast}\n")
    done = run_cli("check-config", str(bad))
    assert done.returncode == 2
    assert "filters[0].timeout_ms" in done.stderr

    broken = tmp_path / "broken.yaml"
    broken.write_text("filters: [\n")
    done = run_cli("check-config", str(broken))
    assert done.returncode == 2
    assert "not valid YAML" in done.stderr

    done = run_cli("check-config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  - {name: x, type: denylist, params: {}}\n")
    done = run_cli("serve", "--config", str(bad), "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert "filters[0].params" in done.stderr
    done = run_cli("serve", "--upstream", "localhost:8000")
    assert done.returncode == 2
    assert "--upstream" in done.stderr
