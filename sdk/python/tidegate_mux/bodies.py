"""JSON bodies of OPEN, ACCEPT, REJECT and GOAWAY (docs/mux-protocol.md §4).

Parsing follows the Rust reference (serde with ``#[serde(default)]``):
missing fields take their default, **unknown fields are ignored** (that is
how v1 grows), a field of the wrong JSON type is ``bad_json``. Encoding is
compact JSON in declaration order with raw UTF-8, as ``serde_json`` writes
it, so both SDKs put the same bytes on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .errors import BadJson

Headers = list[tuple[str, str]]


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; serde_json refuses them too.
    raise ValueError(f"{name} is not valid JSON")


def json_object(kind: object, body: bytes) -> dict[str, Any]:
    """Parse a body as a JSON object; an empty body reads as ``{}``."""
    if not body:
        return {}
    try:
        value = json.loads(bytes(body).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadJson(kind, str(e)) from None
    if not isinstance(value, dict):
        raise BadJson(kind, "not a JSON object")
    return value


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Fields:
    """Typed access to one parsed object, raising ``bad_json`` on a wrong type."""

    def __init__(self, kind: object, obj: dict[str, Any]) -> None:
        self.kind = kind
        self.obj = obj

    def _bad(self, name: str, want: str) -> BadJson:
        return BadJson(self.kind, f"field {name!r} must be {want}")

    def str(self, name: str, default: str = "") -> str:
        v = self.obj.get(name, default)
        if not isinstance(v, str):
            raise self._bad(name, "a string")
        return v

    def opt_str(self, name: str) -> str | None:
        v = self.obj.get(name)
        if v is not None and not isinstance(v, str):
            raise self._bad(name, "a string or null")
        return v

    def bool(self, name: str) -> bool:
        v = self.obj.get(name, False)
        if not isinstance(v, bool):
            raise self._bad(name, "a boolean")
        return v

    def str_list(self, name: str) -> list[str]:
        v = self.obj.get(name, [])
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise self._bad(name, "a list of strings")
        return list(v)

    def headers(self, name: str = "headers") -> Headers:
        v = self.obj.get(name, [])
        ok = isinstance(v, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in v
        )
        if not ok:
            raise self._bad(name, "a list of [name, value] string pairs")
        return [(p[0], p[1]) for p in v]

    def u16(self, name: str) -> int:
        if name not in self.obj:
            raise BadJson(self.kind, f"missing field {name!r}")
        v = self.obj[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
            raise self._bad(name, "an integer 0-65535")
        return v


def _pairs(headers: Headers) -> list[list[str]]:
    return [[n, v] for n, v in headers]


@dataclass(slots=True)
class OpenBody:
    """OPEN (§4.1): what the gateway knows about the client's request."""

    path: str = ""
    """Request path after the route's ``strip_prefix``."""
    query: str = ""
    """The part after ``?``, without it ("" when absent)."""
    headers: Headers = field(default_factory=list)
    """End-to-end request headers, names lower-case, in order (may repeat)."""
    client_addr: str = ""
    protocols: list[str] = field(default_factory=list)
    """Sub-protocols the client offered that the route allows, client's order."""
    route: str = ""
    tls: bool = False
    identity: Any = None
    """From edge auth (``subject``, ``method``, ``claims``), or ``None``."""

    def header(self, name: str) -> str | None:
        """First value of a request header (case-insensitive), or ``None``."""
        name = name.lower()
        return next((v for n, v in self.headers if n.lower() == name), None)

    @property
    def params(self) -> dict[str, list[str]]:
        """``query`` parsed (percent-decoded, ``+`` as space, blank values
        kept): ``?room=5&tag=a&tag=b`` → ``{"room": ["5"], "tag": ["a", "b"]}``.
        Parsed on each access: keep the result if you read it often."""
        return parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str, default: str | None = None) -> str | None:
        """First value of query parameter ``name``, or ``default``."""
        values = self.params.get(name)
        return values[0] if values else default

    def to_json(self) -> bytes:
        return _dump(
            {
                "path": self.path,
                "query": self.query,
                "headers": _pairs(self.headers),
                "client_addr": self.client_addr,
                "protocols": self.protocols,
                "route": self.route,
                "tls": self.tls,
                "identity": self.identity,
            }
        )

    @classmethod
    def from_json(cls, body: bytes, kind: object = "OPEN") -> OpenBody:
        f = _Fields(kind, json_object(kind, body))
        return cls(
            path=f.str("path"),
            query=f.str("query"),
            headers=f.headers(),
            client_addr=f.str("client_addr"),
            protocols=f.str_list("protocols"),
            route=f.str("route"),
            tls=f.bool("tls"),
            identity=f.obj.get("identity"),
        )


@dataclass(slots=True)
class AcceptBody:
    """ACCEPT (§4.2); both fields optional and left out when unset."""

    protocol: str | None = None
    headers: Headers = field(default_factory=list)

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {}
        if self.protocol is not None:
            obj["protocol"] = self.protocol
        if self.headers:
            obj["headers"] = _pairs(self.headers)
        return _dump(obj)

    @classmethod
    def from_json(cls, body: bytes, kind: object = "ACCEPT") -> AcceptBody:
        f = _Fields(kind, json_object(kind, body))
        return cls(protocol=f.opt_str("protocol"), headers=f.headers())


@dataclass(slots=True)
class RejectBody:
    """REJECT (§4.3); ``status`` is required."""

    status: int
    headers: Headers = field(default_factory=list)
    body: str = ""

    def to_json(self) -> bytes:
        return _dump({"status": self.status, "headers": _pairs(self.headers), "body": self.body})

    @classmethod
    def from_json(cls, body: bytes, kind: object = "REJECT") -> RejectBody:
        f = _Fields(kind, json_object(kind, body))
        return cls(status=f.u16("status"), headers=f.headers(), body=f.str("body"))


@dataclass(slots=True)
class GoawayBody:
    """GOAWAY (§6)."""

    reason: str = ""

    def to_json(self) -> bytes:
        return _dump({"reason": self.reason})

    @classmethod
    def from_json(cls, body: bytes, kind: object = "GOAWAY") -> GoawayBody:
        f = _Fields(kind, json_object(kind, body))
        return cls(reason=f.str("reason"))
