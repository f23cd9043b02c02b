"""Issue #14, the client side of the front door, black-box against the
release binary: the path a route matches is the path the application
sees; identity headers never come from the client; one valid Host and an
unambiguous body length; a credential is removed from every place it may
be carried."""

from __future__ import annotations

import pytest

from edge_support import g, head, send_head, whoami

API_KEY = "k-0123456789abcdef"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with g.Stack(tmp_path_factory.mktemp("paths")) as stack, g.PyUpstream() as up:
        yield stack.run_config(
            f"""
[admin]
listen = ""

[[listeners]]
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = ["{up.url}"]

[[upstreams]]
name = "based"
endpoints = ["{up.url}/base"]

[[auth_policies]]
name = "keys"
sources = ["bearer", "query:access_token", "cookie:session"]
identity_headers = {{ sub = "X-Auth-Subject" }}
api_keys = {{ keys = [{{ name = "ops", key = "{API_KEY}" }}] }}

[[routes]]
name = "public"
path = "/public"
upstream = "app"

[[routes]]
name = "admin"
path = "/admin"
upstream = "app"
auth = "keys"

[[routes]]
name = "stripped"
path = "/app"
upstream = "based"
strip_prefix = true
"""
        )


@pytest.mark.parametrize(
    "path",
    ["/public/../admin", "/public/%2e%2e/admin", "/public/.%2E/admin", "/public/./../admin/x"],
)
def test_dot_segments_cannot_skip_a_routes_auth(gw, path):
    # Normalised first, the request is /admin...: that route's auth applies.
    status, seen = whoami(gw.addr, head(path))
    assert status == 401, (path, seen)


def test_the_application_sees_the_normalised_path(gw):
    status, seen = whoami(gw.addr, head("/public//a/./b/%7Euser/../c?x=1"))
    assert status == 101
    assert seen["path"] == "/public/a/b/c?x=1"


@pytest.mark.parametrize("path", ["/public/..%2Fadmin", "/public/a%2fb", "/public/%zz", "/public/%00"])
def test_paths_without_a_normal_form_are_refused(gw, path):
    status, _, _ = send_head(gw.addr, head(path))
    assert status == 400, path


def test_strip_prefix_stays_under_the_base_path(gw):
    status, seen = whoami(gw.addr, head("/app/x/../../../../y"))
    # /app/x/../../../../y normalises to /y: no route, never /base/../y.
    assert status == 404, seen
    status, seen = whoami(gw.addr, head("/app/x/../y"))
    assert status == 101
    assert seen["path"] == "/base/y"


def test_identity_headers_are_removed_on_routes_without_auth(gw):
    status, seen = whoami(gw.addr, head("/public", extra=("X-Auth-Subject: root",)))
    assert status == 101
    assert "x-auth-subject" not in seen["headers"]


def test_a_credential_is_removed_from_every_place(gw):
    raw = head(
        f"/admin?access_token={API_KEY}&keep=1",
        extra=(f"Authorization: Bearer {API_KEY}", f"Cookie: session={API_KEY}; theme=dark"),
    )
    status, seen = whoami(gw.addr, raw)
    assert status == 101
    assert API_KEY not in repr(seen), seen
    assert seen["path"] == "/admin?keep=1"
    assert seen["headers"]["cookie"] == "theme=dark"
    assert seen["headers"]["x-auth-subject"] == "ops"


@pytest.mark.parametrize(
    "raw",
    [
        head("/public", host="exa mple.com"),
        head("/public", host="example.com:99999"),
        head("/public", host="a@b"),
        head("/public", extra=("Host: other.example",)),
        head("/public", extra=("Content-Length: 0", "Content-Length: 0")),
        head("/public", extra=("Content-Length: 0", "Transfer-Encoding: chunked")),
        head("/public", extra=("Content-Length: +0",)),
        head("/public", eol="\n"),
        head("/public", extra=("X-A: 1\nX-B: 2",)),
    ],
    ids=[
        "space-in-host",
        "bad-port",
        "userinfo-host",
        "duplicate-host",
        "duplicate-length",
        "length-and-chunked",
        "signed-length",
        "bare-lf-head",
        "bare-lf-line",
    ],
)
def test_ambiguous_heads_get_400(gw, raw):
    status, sock, _ = send_head(gw.addr, raw)
    sock.close()
    assert status == 400
