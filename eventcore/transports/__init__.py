"""Broker transports: route event types through an existing distributed engine.

* :mod:`eventcore.transports.nats`: NATS JetStream (``pip install "eventcore-py[nats]"``)
* :mod:`eventcore.transports.redis`: Redis Streams (``pip install "eventcore-py[redis]"``)

Each is imported on its own, so ``import eventcore`` never needs a broker client.
See ``eventcore._transport`` for the seam they implement, and
``eventcore.transports._kit`` for what they share.
"""

from ._kit.errors import BrokerUnavailable as BrokerUnavailable
