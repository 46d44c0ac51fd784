"""The dashboard's HTTP endpoints, framework-neutral: a request in, a reply or a stream out.

Every route is relative (the page asks for ``events``, not ``/events``), so the
dashboard works under any prefix and behind a proxy. Every endpoint, the static
files, JSON and the event stream alike, goes through the same gate:

* with ``auth=``: ``auth(request)`` must say yes (401 otherwise);
* without: only a loopback client that came through no proxy (no ``Forwarded`` /
  ``X-Forwarded-For`` / ``X-Real-IP`` header) and asked for a loopback ``Host``
  (``localhost``, ``127.0.0.1``, ``[::1]``: no DNS rebinding) is answered (403
  otherwise);
* actions are POSTs with the CSRF token the page received, a JSON body, and an
  ``Origin`` that is the page's own (or listed in ``allowed_origins``); read-only
  unless ``allow_actions=True``.

Every answer carries a strict Content-Security-Policy (scripts and styles from
the page's own origin only, nothing else), frame denial and ``no-store``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import ipaddress
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import anyio

from ._core import Auth, Dashboard, Request

#: headers on every answer
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-resource-policy", "same-origin"),
)

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")

#: the largest action body read
MAX_BODY = 16 * 1024


@dataclass
class Reply:
    """A whole answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Stream:
    """A Server-Sent Events answer: iterate ``body``, then call ``release`` (always)."""

    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    release: Callable[[], None] = field(default=lambda: None)


def basic_auth(username: str, password: str) -> Auth:
    """An ``auth=`` that wants HTTP Basic credentials (the browser asks for them once
    and sends them with every request, the event stream included). Serve it over
    HTTPS anywhere but on loopback."""
    want = (username.encode(), password.encode())

    def check(request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # both compared, always: no early exit that times the user name
        same_user = hmac.compare_digest(user, want[0])
        same_secret = hmac.compare_digest(secret, want[1])
        return same_user and same_secret

    check.challenge = 'Basic realm="eventcore dashboard", charset="UTF-8"'  # type: ignore[attr-defined]
    return check


def _json(status: int, body: Any, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(
        status,
        [("content-type", "application/json"), *SECURITY_HEADERS, *extra],
        json.dumps(body, separators=(",", ":")).encode(),
    )


def _text(status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(
        status,
        [("content-type", "text/plain; charset=utf-8"), *SECURITY_HEADERS, *extra],
        (text + "\n").encode(),
    )


def is_loopback(host: str | None) -> bool:
    """Whether *host* is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine: localhost or a loopback address."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return name in ("localhost", "") or name.endswith(".localhost") or is_loopback(name)


async def _gate(dashboard: Dashboard, request: Request) -> Reply | None:
    """The same check for every endpoint; None when the request may pass."""
    auth = dashboard.auth
    if auth is None:
        proxied = any(name in request.headers for name in _PROXY_HEADERS)
        if not is_loopback(request.client) or proxied:
            return _text(
                403,
                "the eventcore dashboard answers loopback clients only: it has no auth= "
                "(requests through a proxy count as remote)",
            )
        if not _loopback_host(request.headers.get("host", "")):
            # a page of another site whose name was rebound to 127.0.0.1 (DNS rebinding)
            # would be same-origin with the dashboard: only loopback names are answered
            return _text(403, "without auth= the dashboard answers only for a loopback Host")
        return None
    verdict = auth(request)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if verdict is True:
        return None
    challenge = getattr(auth, "challenge", None)
    extra = (("www-authenticate", challenge),) if challenge else ()
    return _text(401, "the eventcore dashboard needs credentials", extra)


async def handle(dashboard: Dashboard, request: Request, mount_name: str = "") -> Reply | Stream:
    """Answer *request* (its ``route`` starts with ``/``, or is ``""`` for the mount
    point itself, which is redirected to ``mount_name + "/"`` so relative URLs work).
    """
    refused = await _gate(dashboard, request)
    if refused is not None:
        return refused
    route = request.route
    if route == "":
        target = (mount_name or ".") + "/"
        return Reply(308, [("location", target), *SECURITY_HEADERS], b"")
    if not dashboard.started:
        return _text(
            503,
            "the eventcore dashboard is not running: enter `async with dashboard:` "
            "(or dashboard.lifespan) for the life of the app",
        )
    if request.method == "POST":
        if route != "/action":
            return _text(405, "only action takes a POST")
        return await _action(dashboard, request)
    if request.method not in ("GET", "HEAD"):
        return _text(405, "method not allowed", (("allow", "GET, POST"),))
    static = _STATIC.get(route)
    if static is not None:
        name, content_type = static
        body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        return Reply(200, [("content-type", content_type), *SECURITY_HEADERS], body)
    if route == "/snapshot.json":
        return _json(
            200,
            {
                "sample": dashboard.latest(),
                "letters": dashboard.letter_list(),
                "letter_groups": dashboard.letter_groups(),
                "interval": dashboard.interval,
            },
        )
    if route == "/history.json":
        return _json(200, {"samples": list(dashboard.samples)})
    if route == "/events":
        return _stream(dashboard, request.headers.get("last-event-id"))
    return _text(404, f"no such page: {route}")


async def _action(dashboard: Dashboard, request: Request) -> Reply:
    if not dashboard.allow_actions:
        return _text(403, "this dashboard is read-only (Dashboard(allow_actions=False))")
    headers = request.headers
    origin = headers.get("origin")
    host = headers.get("host", "")
    own = {f"http://{host}", f"https://{host}", *dashboard.allowed_origins}
    if origin is None or origin not in own:
        return _text(403, f"refused: the Origin {origin!r} is not this dashboard's")
    if headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return _text(403, "refused: not a same-origin request")
    token = headers.get("x-csrf-token", "")
    if not hmac.compare_digest(token.encode(), dashboard.csrf_token.encode()):
        return _text(403, "refused: a missing or wrong CSRF token (reload the page)")
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _text(415, "an action is a JSON body")
    try:
        body = json.loads(request.body)
        action, target = str(body["action"]), str(body["target"])
    except (ValueError, KeyError, TypeError, RecursionError):  # nested too deep: refused too
        return _text(400, 'an action is {"action": ..., "target": ...}')
    status, answer = await dashboard.act(action, target)
    return _json(status, answer)


def _sse(kind: str, data: Any, last: float | None = None) -> bytes:
    ident = "" if last is None else f"id: {last}\n"
    return f"event: {kind}\n{ident}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _stream(dashboard: Dashboard, last_event_id: str | None) -> Reply | Stream:
    """The event stream: ``hello`` (settings, token, history), then one ``sample`` per
    interval, a comment as heartbeat. A stream ends after ``max_stream`` seconds (so
    that no server waits long for it at shutdown); the browser reconnects with the
    id of the last sample it got, and its ``hello`` carries only the newer ones."""
    if not dashboard.join():
        return _text(503, f"too many viewers (max_viewers={dashboard.max_viewers})")
    try:
        since = float(last_event_id) if last_event_id else None
    except ValueError:
        since = None

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        hello = dashboard.hello()
        if since is not None:
            hello["history"] = [s for s in hello["history"] if s["t"] > since]
        last = hello["history"][-1]["t"] if hello["history"] else since
        yield _sse("hello", hello, last)
        letters = dashboard.letters_version
        ends = anyio.current_time() + dashboard.max_stream
        while dashboard.started and anyio.current_time() < ends:
            sample = await dashboard.next_sample()
            if sample is None or sample["t"] == last:
                yield b": heartbeat\n\n"
                continue
            last = sample["t"]
            message: dict[str, Any] = {"sample": sample}
            if dashboard.letters_version != letters:
                letters = dashboard.letters_version
                message["letters"] = dashboard.letter_list()
                message["letter_groups"] = dashboard.letter_groups()
            yield _sse("sample", message, last)

    headers = [
        ("content-type", "text/event-stream"),
        ("x-accel-buffering", "no"),  # nginx: pass events on at once
        *SECURITY_HEADERS,
    ]
    return Stream(200, headers, events(), dashboard.leave)
