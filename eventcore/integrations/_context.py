"""Turning on ``propagate_context`` where users need it (the web and tracing integrations)."""

from __future__ import annotations

import logging

from eventcore import Dispatcher


def propagate_context(bus: Dispatcher, by: str) -> None:
    """Make *bus* run handlers in a copy of the publisher's contextvars (the request id,
    the current span), and say so at DEBUG level on the ``eventcore.integrations`` logger.

    :param by: the integration that asks, for the log record
    """
    if bus.propagate_context:
        return
    bus.propagate_context = True
    logging.getLogger("eventcore.integrations").debug(
        "%s turned on propagate_context: handlers run in a copy of the publisher's "
        "contextvars (request id, current span); pass propagate_context=False to leave it off",
        by,
    )
