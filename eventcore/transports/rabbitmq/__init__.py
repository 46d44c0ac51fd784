"""RabbitMQ: route event types through quorum queues (``pip install "eventcore-py[rabbitmq]"``).

::

    from eventcore import Dispatcher
    from eventcore.transports.rabbitmq import RabbitMQTransport

    bus = Dispatcher(transport=RabbitMQTransport("amqp://guest:guest@127.0.0.1:5672/",
                                                 group="billing"))

How a routed type maps onto RabbitMQ (``prefix`` defaults to ``eventcore``; the
whole table is in ``docs/RABBITMQ.md``):

* a durable topic exchange ``<prefix>``; a durable quorum queue per (type, group),
  ``<prefix>.<group>.<name>``, bound to it by the event's name: every group gets
  its copy, the processes of one group share the work; ``groups=`` names the
  groups a publisher feeds (their queues are created when missing);
* a type with a ``key``: ``partitions`` queues, chosen by CRC-32 of the key, each
  with a single active consumer: one key is handled in order by one process at a
  time;
* publish: publisher confirms (``publish`` returns once RabbitMQ has it; many in
  flight on one channel), ``mandatory`` (unroutable is an error, never a silent
  drop), ``message_id`` = the event id; a queue at ``max_length`` refuses it
  (``reject-publish``) and the type's overflow policy decides;
* consume: per-consumer prefetch = the type's local queue size; handled -> ack;
  shutdown -> nack with requeue; failed or refused -> a copy with the reason to
  the dead-letter exchange ``<prefix>.dead`` (queue ``<prefix>.dead_letters``),
  then ack; the queues' ``x-delivery-limit`` (``max_deliver``) and RabbitMQ's own
  dead-lettering to the same exchange catch poison messages.

Built on aiormq (the AMQP client aio-pika wraps). Runs on asyncio and uvloop; on
trio, starting a dispatcher with a RabbitMQ-routed type raises
:class:`~eventcore.InvalidConfiguration`.
"""

from __future__ import annotations

from .consume import RabbitReceipt
from .transport import RabbitMQTransport, RabbitSource

__all__ = ["RabbitMQTransport", "RabbitReceipt", "RabbitSource"]
