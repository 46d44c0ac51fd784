"""A live dashboard of a :class:`~eventcore.Dispatcher`: see the queues breathe.

Per event type: queue depth / capacity, accepted / handled / dropped / failed
rates, handlers in flight / limit, handler latency p50 / p95 / p99, dead letters,
and, for a type routed through a broker, its pending and redelivered messages.
One static page (a small script, inline SVG charts: no build step, no CDN, works
offline) fed by Server-Sent Events; ``snapshot.json`` for scripts;
``eventcore top URL`` in a terminal.

Framework-neutral core (:class:`Dashboard`, anyio and the standard library) with
thin adapters: :class:`eventcore.dashboard.asgi.DashboardApp` (FastAPI, Starlette,
any ASGI server) and :func:`eventcore.dashboard.aiohttp.setup`.

Safe by default: without ``auth=`` it answers loopback clients only; read-only
unless ``allow_actions=True`` (pause / resume a type, replay / discard a dead
letter: POSTs with a CSRF token and an Origin check); payloads redacted unless
``show_payloads=True``; a strict Content-Security-Policy and frame denial.
Nobody watching costs nothing: the one sampler and the latency measurement run
only while a page or ``eventcore top`` is connected.
"""

from ._core import Auth as Auth
from ._core import Dashboard as Dashboard
from ._core import Request as Request
from ._http import basic_auth as basic_auth

__all__ = ["Auth", "Dashboard", "Request", "basic_auth"]
