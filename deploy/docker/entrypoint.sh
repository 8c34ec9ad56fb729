#!/bin/sh
# Start `taxmeter serve` from the environment: the config file, then each
# TAXMETER_* variable that is set overrides it. Extra arguments go to serve.
set -eu
set -- --config "${TAXMETER_CONFIG:-/etc/taxmeter/taxmeter.yaml}" "$@"
if [ -n "${TAXMETER_UPSTREAM:-}" ]; then set -- "$@" --upstream "$TAXMETER_UPSTREAM"; fi
if [ -n "${TAXMETER_LISTEN:-}" ]; then set -- "$@" --listen "$TAXMETER_LISTEN"; fi
if [ -n "${TAXMETER_METRICS_LISTEN:-}" ]; then set -- "$@" --metrics-listen "$TAXMETER_METRICS_LISTEN"; fi
if [ -n "${TAXMETER_WORKERS:-}" ]; then set -- "$@" --workers "$TAXMETER_WORKERS"; fi
if [ -n "${TAXMETER_LOG_LEVEL:-}" ]; then set -- "$@" --log-level "$TAXMETER_LOG_LEVEL"; fi
# exec: taxmeter replaces the shell, so SIGTERM reaches it directly and it drains.
exec taxmeter serve "$@"
