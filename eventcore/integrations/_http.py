"""What the web integrations answer when the dispatcher refuses a publish (no framework).

- ``QueueFull``, ``PublishTimeout``, ``DispatcherClosed``: 503 Service Unavailable
  with ``Retry-After`` - backpressure the client can act on
- ``Unauthorized``: 403 Forbidden (the principal is not named in the body)
"""

from __future__ import annotations

import math
from typing import Any

from eventcore import DispatcherClosed, PublishTimeout, QueueFull, Unauthorized

BACKPRESSURE = (QueueFull, PublishTimeout, DispatcherClosed)
"""The refusals that mean "busy: retry later"."""

REFUSALS = (*BACKPRESSURE, Unauthorized)
"""Every refusal the integrations map to an HTTP answer."""


def refusal(exc: BaseException, retry_after: float) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, JSON body and headers answering the refused publish *exc*."""
    event_type = getattr(exc, "event_type", None)
    name: str | None = None if event_type is None else event_type.__qualname__
    if isinstance(exc, Unauthorized):
        denied = {"detail": f"not allowed to publish {name}", "reason": "unauthorized"}
        return 403, {**denied, "event_type": name}, {}
    reason = (
        "queue_full"
        if isinstance(exc, QueueFull)
        else "publish_timeout"
        if isinstance(exc, PublishTimeout)
        else "shutting_down"
        if isinstance(exc, DispatcherClosed)
        else "unavailable"
    )
    busy = {"detail": "the service is busy: retry later", "reason": reason, "event_type": name}
    return 503, busy, {"Retry-After": str(max(1, math.ceil(retry_after)))}
