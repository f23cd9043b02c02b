"""Issue #14, the admin listener, black-box against the release binary: a
browser page (a cross-origin "simple" POST, or a DNS name rebound to
127.0.0.1) cannot drive it, an optional token guards every endpoint, and
URLs with userinfo or a query are redacted wherever they are printed."""

from __future__ import annotations

import subprocess

import pytest

from edge_support import g, split_addr

import socket

TOKEN = "t-0123456789abcdef"
SECRET = "s3cr3t-in-url"


def config(up_url: str, extra_admin: str = "") -> str:
    return f"""
[admin]
listen = "127.0.0.1:0"
{extra_admin}

[[listeners]]
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["{up_url}"]

[[auth_policies]]
name = "fwd"
forward = {{ url = "http://user:{SECRET}@127.0.0.1:9/check?key={SECRET}" }}

[[routes]]
path = "/"
upstream = "app"
auth = "fwd"
"""


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory):
    with g.Stack(tmp_path_factory.mktemp("admin")) as stack, g.PyUpstream() as up:
        yield stack, up


@pytest.fixture(scope="module")
def gw(stack_up):
    stack, up = stack_up
    return stack.run_config(config(up.url), admin=True)


@pytest.fixture(scope="module")
def gw_token(stack_up):
    stack, up = stack_up
    return stack.run_config(config(up.url, f'token = "{TOKEN}"'), admin=True)


def request(addr: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    lines += ["Content-Length: 0", "Connection: close"]
    with socket.create_connection(split_addr(addr), timeout=20) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    status = int(buf.split(b" ", 2)[1])
    return status, buf.split(b"\r\n\r\n", 1)[1].decode(errors="replace")


def test_simple_cross_origin_post_cannot_reload(gw):
    status, _ = request(
        gw.admin,
        "POST",
        "/reload",
        {"Host": gw.admin, "Origin": "https://evil.example", "Content-Type": "text/plain"},
    )
    assert status == 403


def test_non_simple_post_reloads(gw):
    status, body = request(gw.admin, "POST", "/reload", {"Host": gw.admin, "X-Tidegate-Admin": "1"})
    assert status == 200, body


@pytest.mark.parametrize("path", ["/config", "/metrics", "/healthz"])
def test_a_rebound_name_is_not_answered(gw, path):
    status, body = request(gw.admin, "GET", path, {"Host": "rebind.evil.example:9090"})
    assert status == 421
    assert SECRET not in body
    status, _ = request(gw.admin, "GET", path, {"Host": "localhost"})
    assert status == 200


def test_token_guards_every_endpoint(gw_token):
    for path in ["/config", "/metrics", "/healthz", "/readyz"]:
        status, _ = request(gw_token.admin, "GET", path, {"Host": "127.0.0.1"})
        assert status == 401, path
        auth = {"Host": "127.0.0.1", "Authorization": f"Bearer {TOKEN}"}
        status, _ = request(gw_token.admin, "GET", path, auth)
        assert status == 200, path
    status, _ = request(gw_token.admin, "POST", "/reload", {"Host": "127.0.0.1", "Authorization": f"Bearer {TOKEN}"})
    assert status == 200


def test_urls_are_redacted_in_config_and_check_config(gw, stack_up, tmp_path):
    status, body = request(gw.admin, "GET", "/config", {"Host": "127.0.0.1"})
    assert status == 200
    assert SECRET not in body
    assert "127.0.0.1:9/check" in body
    stack, up = stack_up
    path = tmp_path / "c.toml"
    path.write_text(config(up.url, f'token = "{TOKEN}"'))
    out = subprocess.run(
        [str(g.tidegate_bin()), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=g._child_env(),
    )
    assert out.returncode == 0, out.stderr
    printed = out.stdout + out.stderr
    assert SECRET not in printed
    assert TOKEN not in printed
