"""pytest fixtures: real tidegate processes (plain and TLS) in front of
`tidegate echo` and of a Python `websockets` upstream. See gateway.py."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway as g  # noqa: E402


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with g.Stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> g.Certs:
    return g.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def client_ssl(certs) -> ssl.SSLContext:
    return g.client_ssl_context(certs)


@pytest.fixture(scope="session")
def echo_upstream(stack) -> str:
    return "ws://" + stack.echo()


@pytest.fixture(scope="session")
def py_upstream():
    with g.PyUpstream() as up:
        yield up


@pytest.fixture(scope="session")
def gw_echo_ws(stack, echo_upstream) -> g.Gateway:
    return stack.proxy(echo_upstream)


@pytest.fixture(scope="session")
def gw_echo_wss(stack, echo_upstream, certs) -> g.Gateway:
    return stack.proxy(echo_upstream, tls=(certs.cert, certs.key))


@pytest.fixture(scope="session")
def gw_py_ws(stack, py_upstream) -> g.Gateway:
    return stack.proxy(py_upstream.url)


@pytest.fixture(scope="session")
def gw_py_wss(stack, py_upstream, certs) -> g.Gateway:
    return stack.proxy(py_upstream.url, tls=(certs.cert, certs.key))


class Target:
    """Where a test connects: URL plus the SSL context for wss://."""

    def __init__(self, gw: g.Gateway, ssl_ctx: ssl.SSLContext | None):
        self.gw = gw
        self.ssl = ssl_ctx if gw.tls else None

    def url(self, path: str = "/") -> str:
        return self.gw.url(path)

    def connect(self, path: str = "/", **kw):
        from websockets.asyncio.client import connect

        kw.setdefault("open_timeout", 20)
        kw.setdefault("close_timeout", 20)
        kw.setdefault("max_size", None)
        if self.ssl is not None:
            kw["ssl"] = self.ssl
        return connect(self.url(path), **kw)


@pytest.fixture(params=["ws", "wss"])
def echo(request, client_ssl) -> Target:
    """tidegate in front of `tidegate echo`, over ws:// and wss://."""
    return Target(request.getfixturevalue(f"gw_echo_{request.param}"), client_ssl)


@pytest.fixture(params=["ws", "wss"])
def pyup(request, client_ssl) -> Target:
    """tidegate in front of a Python `websockets` upstream, ws:// and wss://."""
    return Target(request.getfixturevalue(f"gw_py_{request.param}"), client_ssl)


def run(coro, timeout: float = 60):
    """Run one async test body with a generous overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def arun():
    return run
