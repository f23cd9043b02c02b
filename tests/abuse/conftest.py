"""Hostile clients and applications against the real gateway binary, each
test with a gateway of its own so its memory can be measured alone.

The harness (starting tidegate, finding its address, stopping it) is
tests/python/gateway.py; the bounds asserted here are the ones
docs/security.md states."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "python"))

import gateway as g  # noqa: E402
from hostile_app import HostileApp  # noqa: E402


@pytest.fixture
def stack(tmp_path):
    with g.Stack(tmp_path) as s:
        yield s


def mux_config(app_url: str, mux_extra: str = "") -> str:
    """One mux route in front of `app_url`, one pool connection, and no
    keepalive pings on either side (a flood test must not be ended by a
    ping timeout of a peer that is busy or not reading). `mux_extra`: more
    `[mux]` keys."""
    return f"""
[admin]
listen = ""

[keepalive]
ping_interval = "0s"

[mux]
ping_interval = "600s"
pong_timeout = "600s"
{mux_extra}

[[listeners]]
name = "default"
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["{app_url}"]
pool_size = 1

[[routes]]
name = "mux"
path = "/"
upstream = "app"
mode = "mux"
"""


def start_mux(stack: g.Stack, app: HostileApp, mux_extra: str = "") -> g.Gateway:
    """A gateway in front of `app`, with its mux connection up."""
    stack.on_close(app.close)
    gw = stack.run_config(mux_config(app.url, mux_extra))
    assert app.connected.wait(30), "the gateway never connected to the app"
    return gw
