"""The AMQP client (aiormq) and what its errors mean for a transport."""

from __future__ import annotations

try:
    import aiormq
    import aiormq.abc
    import aiormq.exceptions
    from aiormq.channel import Channel
    from pamqp import commands as spec
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "eventcore.transports.rabbitmq needs aiormq: pip install 'eventcore-py[rabbitmq]'",
        name=exc.name,
    ) from exc

__all__ = ["CONNECTION_ERRORS", "Channel", "aiormq", "spec"]

#: the errors that mean the connection or channel went away (the broker restarted,
#: the network failed, the channel was closed under us)
CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
    RuntimeError,  # aiormq: "<Connection> closed" when a channel is asked of a closed one
)
