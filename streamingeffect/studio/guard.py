"""The studio's gate: every HTTP request and WebSocket passes it before any route sees it.

It refuses, each with one JSON error and before a body byte is read:
- a Host header that is not a name the studio is served under (DNS rebinding: a web page whose own
  name resolves to this machine would otherwise talk to the studio as if it were the studio);
- a state-changing request or a WebSocket from another site (Origin, or Sec-Fetch-Site);
- without the access token, when the studio has one (a non-loopback --host): Jupyter-style, the URL
  printed at start carries it once (``?token=``), the page then holds it as a same-site cookie;
  scripts may send ``Authorization: Bearer TOKEN``;
- a body larger than the request may have: from Content-Length at once, and while a chunked body
  streams in, so an upload never lands on disk beyond its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "streamingeffect_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UPLOAD_SUFFIXES = ("/keyframe",)  # POST routes that take a multipart image; all others take JSON
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around the image itself
DRAIN_BYTES = 16 * 1024 * 1024  # a refused body up to this size is read (and dropped) first
DRAIN_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@dataclass(frozen=True)
class GuardPolicy:
    """What the gate lets through. ``allowed_hosts`` None: any Host (bound to every interface, where
    the token is the protection)."""

    allowed_hosts: frozenset[str] | None
    token: str | None
    max_body_bytes: int  # JSON bodies (effect, offer, recording)
    max_upload_bytes: int  # the image inside a keyframe upload

    def body_limit(self, method: str, path: str) -> int:
        if method == "POST" and path.endswith(UPLOAD_SUFFIXES):
            return self.max_upload_bytes + MULTIPART_SLACK
        return self.max_body_bytes


class BodyTooLarge(HTTPException):
    """A chunked body grew past its limit while it was read (FastAPI passes HTTPException on)."""


def split_host(value: str) -> tuple[str, int | None]:
    """("name", port or None) of a Host header value ("[::1]:7860", "localhost", "a.b:80")."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 1024:.0f} KB"


class StudioGuard:
    """ASGI middleware enforcing a GuardPolicy (see the module's docstring)."""

    def __init__(self, app: ASGIApp, policy: GuardPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self.host_refusal(headers) or self.origin_refusal(scope, headers)
        refusal = refusal or self.token_refusal(scope, headers)
        if refusal is None and scope["type"] == "http":
            refusal = self.length_refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "http":
                await self.drain(receive, headers)
            await self.refuse(scope, send, *refusal)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if self.policy.token is not None and self.query_token(scope) is not None:
            if scope["method"] == "GET" and scope["path"] == "/":
                await self.redirect_with_cookie(scope, send)  # the token leaves the address bar
                return
            send = self.setting_cookie(send)
        limit = self.policy.body_limit(scope["method"], scope["path"])
        await self.app(scope, self.capped(receive, limit), send)

    # ---------------------------------------------------------------------------------- checks

    def host_refusal(self, headers: Headers) -> tuple[int, str] | None:
        allowed = self.policy.allowed_hosts
        name, _ = split_host(headers.get("host", ""))
        if allowed is None or name in allowed:
            return None
        return 400, (
            f"the studio is not served under the name {name or '(none)'!r}; open it as "
            f"{' or '.join(sorted(allowed))} (or start it with --allow-host {name or 'NAME'})"
        )

    def origin_refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:  # not a browser (scripts, curl), unless the browser says it is cross-site
            if headers.get("sec-fetch-site") == "cross-site":
                return 403, "requests from other sites are refused"
            return None
        if self.same_origin(origin, headers.get("host", "")):
            return None
        return 403, f"requests from another site ({origin}) are refused: use the studio's own page"

    @staticmethod
    def same_origin(origin: str, host: str) -> bool:
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
        except ValueError:  # "null", a malformed port
            return False
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            return False
        name, port = split_host(host)
        default = DEFAULT_PORTS[parts.scheme]  # behind a TLS proxy the Host carries the public port
        return parts.hostname.lower() == name and (origin_port or default) == (port or default)

    def token_refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        expected = self.policy.token
        if expected is None or scope["path"].startswith("/static/"):
            return None
        given = self.query_token(scope) or self.header_token(headers) or self.cookie_token(headers)
        if given is not None and secrets.compare_digest(given.encode(), expected.encode()):
            return None
        return 401, (
            "this studio needs its access token: open the address `streamingeffect serve` printed "
            "(it ends in ?token=...), or send 'Authorization: Bearer TOKEN'"
        )

    def length_refusal(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if length is None:
            return None
        if not length.strip().isdigit():
            return 400, f"the Content-Length header {length!r} is not a number"
        limit = self.policy.body_limit(scope["method"], scope["path"])
        if int(length) > limit:
            return 413, f"the request body is {megabytes(int(length))}; the limit here is {megabytes(limit)}"
        return None

    # ---------------------------------------------------------------------------------- token

    @staticmethod
    def query_token(scope: Scope) -> str | None:
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == "token":
                return value
        return None

    @staticmethod
    def header_token(headers: Headers) -> str | None:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    @staticmethod
    def cookie_token(headers: Headers) -> str | None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                return value
        return None

    def cookie_header(self) -> tuple[bytes, bytes]:
        value = f"{TOKEN_COOKIE}={self.policy.token}; Path=/; HttpOnly; SameSite=Strict"
        return b"set-cookie", value.encode("latin-1")

    async def redirect_with_cookie(self, scope: Scope, send: Send) -> None:
        query = [(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k != "token"]
        location = scope["path"] + (f"?{urlencode(query)}" if query else "")
        headers = [(b"location", location.encode("latin-1")), self.cookie_header(), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    def setting_cookie(self, send: Send) -> Send:
        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.cookie_header()]}
            await send(message)

        return with_cookie

    # ---------------------------------------------------------------------------------- bodies

    @staticmethod
    def capped(receive: Receive, limit: int) -> Receive:
        """``receive`` that stops a body (chunked, or longer than it said) at ``limit`` bytes."""
        seen = 0

        async def receive_capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(413, f"the request body is over the limit of {megabytes(limit)}")
            return message

        return receive_capped

    @staticmethod
    async def drain(receive: Receive, headers: Headers) -> None:
        """Read and drop a refused body that is at most DRAIN_BYTES long, so that a client which
        sends its whole body before reading (urllib, some browsers) sees the refusal rather than a
        broken connection. Anything longer is answered at once and the connection is closed."""
        length = headers.get("content-length", "")
        if not length.isdigit() or int(length) > DRAIN_BYTES:
            return

        async def read_all() -> None:
            while (await receive()).get("more_body", False):
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read_all(), DRAIN_SECONDS)

    @staticmethod
    async def refuse(scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["type"] == "websocket":  # before accept: the server answers the handshake with 403
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        body = json.dumps({"error": message}).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
