"""The connection to RabbitMQ: one AMQP connection, a publishing channel (publisher
confirms, unroutable messages returned) and a consuming channel; after a loss, it
connects again with a growing pause and tells the transport (``on_up``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from .._kit import redact, unavailable
from .amqp import CONNECTION_ERRORS, Channel, aiormq

logger = logging.getLogger("eventcore.rabbitmq")

#: the first and the longest pause between two connection attempts (s)
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0


class Link:
    """One open connection and its channels (see the module doc).

    :param on_up: called after every reconnection, once both channels are open
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connect_timeout: float,
        on_up: Callable[[], Awaitable[None]],
    ) -> None:
        self._url = url
        self._name = name
        self._connect_timeout = connect_timeout
        self._on_up = on_up
        self.connection: aiormq.abc.AbstractConnection | None = None
        self.publishing: Channel | None = None
        self.consuming: Channel | None = None
        #: set while the connection and both channels are open
        self.up = asyncio.Event()
        self._closing = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the watcher then stops)."""
        return self._closing

    @property
    def where(self) -> str:
        """The server's address without credentials."""
        return redact(self._url)

    async def connect(self) -> None:
        """Open the connection and both channels within ``connect_timeout``.

        :raises BrokerUnavailable: RabbitMQ cannot be reached, or refused this client
        """
        self._closing = False
        try:
            await asyncio.wait_for(self._open(), self._connect_timeout)
        except (Exception, asyncio.TimeoutError) as exc:
            await self._drop()
            raise unavailable("RabbitMQ", self.where, exc, "connecting") from None

    async def _open(self) -> None:
        connection = await aiormq.connect(
            self._url, client_properties={"connection_name": self._name}
        )
        self.connection = connection
        self.publishing = await self._channel(connection, confirms=True)
        self.consuming = await self._channel(connection, confirms=False)
        self.up.set()

    @staticmethod
    async def _channel(connection: aiormq.abc.AbstractConnection, *, confirms: bool) -> Channel:
        """A channel (with publisher confirms, returning unroutable messages as errors)."""
        channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
        return cast(Channel, channel)  # aiormq's concrete channel: basic_publish(wait=)

    async def publisher(self) -> Channel:
        """The publishing channel, reopened if a channel error closed it."""
        channel = self.publishing
        if channel is None or self.connection is None or not self.up.is_set():
            raise aiormq.exceptions.ChannelInvalidStateError("RabbitMQ is not connected")
        if channel.is_closed:  # a channel error (not the connection): open another
            channel = self.publishing = await self._channel(self.connection, confirms=True)
        return channel

    async def watch(self) -> None:
        """Reconnect whenever the connection, or the consuming channel (a channel error
        from RabbitMQ), is lost (a crew job: runs until closed)."""
        while not self._closing:
            connection, consuming = self.connection, self.consuming
            if connection is not None and consuming is not None and not connection.is_closed:
                reason = await self._lost(connection, consuming)
                if self.closed:
                    return
                logger.warning(
                    "RabbitMQ at %s: %s; reconnecting (publishes follow the overflow "
                    "policy meanwhile, unacknowledged deliveries come again)",
                    self.where,
                    reason,
                )
            self.up.clear()
            await self._reconnect()

    @staticmethod
    async def _lost(connection: aiormq.abc.AbstractConnection, consuming: Channel) -> str:
        """Wait until the connection or the consuming channel closes; what happened."""
        watched = {connection.closing: "connection lost", consuming.closing: "channel closed"}
        done, waiting = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        for observer in waiting:
            observer.cancel()  # an observer only: the resource stays as it is
        ended = done.pop()
        cause = None if ended.cancelled() else ended.exception()
        return f"{watched[ended]} ({redact(str(cause)) if cause else 'closed'})"

    async def _reconnect(self) -> None:
        pause = BACKOFF_FIRST
        while not self._closing:
            await self._drop()
            try:
                await asyncio.wait_for(self._open(), self._connect_timeout)
                # a node that just booted may take a while to recover its queues
                await asyncio.wait_for(self._on_up(), self._connect_timeout)
            except (*CONNECTION_ERRORS, asyncio.TimeoutError) as exc:
                logger.debug("RabbitMQ: reconnecting failed: %s", redact(str(exc)))
                self.up.clear()
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_MAX)
                continue
            logger.info("RabbitMQ at %s: reconnected", self.where)
            return

    async def _drop(self) -> None:
        """Forget the connection (closed if it is still open)."""
        self.up.clear()
        connection, self.connection = self.connection, None
        self.publishing = self.consuming = None
        if connection is not None and not connection.is_closed:
            try:
                await asyncio.wait_for(connection.close(), self._connect_timeout)
            except (*CONNECTION_ERRORS, asyncio.TimeoutError) as exc:
                logger.debug("RabbitMQ: closing a lost connection: %s", redact(str(exc)))

    async def close(self) -> None:
        """Close the connection for good (the watcher stops reconnecting)."""
        self._closing = True
        await self._drop()
