"""The proxy fixtures of tests/proxy, for the reliability tests."""

from tests.proxy.conftest import echo_server, model, start_proxy

__all__ = ["echo_server", "model", "start_proxy"]
