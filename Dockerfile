# taxmeter as a container: the proxy on 8080, its metrics and probes on 9464.
# Build from the repository root:  docker build -t taxmeter .
# Config: mount a YAML file at /etc/taxmeter/taxmeter.yaml (or point
# TAXMETER_CONFIG elsewhere); TAXMETER_UPSTREAM, TAXMETER_LISTEN,
# TAXMETER_METRICS_LISTEN, TAXMETER_WORKERS and TAXMETER_LOG_LEVEL override it.

# Stage 1: build a virtual environment with taxmeter and its runtime
# dependencies only (no test or ml extras).
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/taxmeter \
    PATH=/opt/taxmeter/bin:$PATH
RUN python -m venv /opt/taxmeter
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY filters ./filters
# The same command as the README's "Install" section (a test keeps them equal).
RUN pip install .

# Stage 2: the runtime image: the virtual environment, no build tools, no source.
FROM python:3.11-slim-bookworm
ENV VIRTUAL_ENV=/opt/taxmeter \
    PATH=/opt/taxmeter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TAXMETER_CONFIG=/etc/taxmeter/taxmeter.yaml \
    TAXMETER_LISTEN=0.0.0.0:8080 \
    TAXMETER_METRICS_LISTEN=0.0.0.0:9464 \
    TAXMETER_HEALTH_URL=http://127.0.0.1:9464/healthz
RUN groupadd --system --gid 10001 taxmeter \
    && useradd --system --uid 10001 --gid taxmeter --no-create-home --shell /usr/sbin/nologin taxmeter
COPY --from=build /opt/taxmeter /opt/taxmeter
COPY deploy/docker/entrypoint.sh /usr/local/bin/taxmeter-entrypoint
COPY deploy/docker/healthcheck.py /usr/local/bin/taxmeter-healthcheck
COPY proxy/config/default_config.yaml /etc/taxmeter/taxmeter.yaml
USER 10001:10001
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/bin/taxmeter-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/taxmeter-entrypoint"]
