"""The proxy fixtures of tests/proxy, for the deploy tests that drive a real proxy."""

from tests.proxy.conftest import model, start_proxy

__all__ = ["model", "start_proxy"]
