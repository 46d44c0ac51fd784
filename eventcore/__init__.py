"""eventcore: an asyncio-native event dispatcher with per-type bounded queues.

Async handlers register per event type on a :class:`Dispatcher`; ``await
publish(event)`` routes each event into the bounded queue of its type, drained by
that type's workers under its concurrency limit. Runs on asyncio, uvloop and trio.
"""

from ._channel import Overflow as Overflow
from ._config import TypeConfig as TypeConfig
from ._delivery import HandlerResult as HandlerResult
from ._delivery import Outcome as Outcome
from ._dispatcher import Dispatcher as Dispatcher
from ._errors import DispatcherClosed as DispatcherClosed
from ._errors import EventcoreError as EventcoreError
from ._errors import InvalidConfiguration as InvalidConfiguration
from ._errors import InvalidEvent as InvalidEvent
from ._errors import InvalidHandler as InvalidHandler
from ._errors import PublishTimeout as PublishTimeout
from ._errors import QueueFull as QueueFull
from ._registry import Subscription as Subscription
from ._stats import TypeStats as TypeStats
from ._types import DropReason as DropReason
from ._version import __version__ as __version__

__all__ = [
    "Dispatcher",
    "DispatcherClosed",
    "DropReason",
    "EventcoreError",
    "HandlerResult",
    "InvalidConfiguration",
    "InvalidEvent",
    "InvalidHandler",
    "Outcome",
    "Overflow",
    "PublishTimeout",
    "QueueFull",
    "Subscription",
    "TypeConfig",
    "TypeStats",
    "__version__",
]
