"""eventcore: an asyncio-native event dispatcher with per-type bounded queues.

Async handlers register per event type on a :class:`Dispatcher`; ``await
publish(event)`` routes each event into the bounded queue of its type, drained by
that type's workers under its concurrency limit. Runs on asyncio, uvloop and trio.
"""

from ._authorization import Grants as Grants
from ._authorization import Policy as Policy
from ._authorization import Principal as Principal
from ._authorization import acting_as as acting_as
from ._authorization import current_principal as current_principal
from ._config import Overflow as Overflow
from ._config import Retry as Retry
from ._config import TypeConfig as TypeConfig
from ._deadletters import DeadLetter as DeadLetter
from ._deadletters import DeadLetterReason as DeadLetterReason
from ._dispatcher import Dispatcher as Dispatcher
from ._dispatcher import Installed as Installed
from ._envelope import HandlerResult as HandlerResult
from ._envelope import Outcome as Outcome
from ._errors import DispatcherClosed as DispatcherClosed
from ._errors import EventcoreError as EventcoreError
from ._errors import HandlerTimeout as HandlerTimeout
from ._errors import InvalidConfiguration as InvalidConfiguration
from ._errors import InvalidEvent as InvalidEvent
from ._errors import InvalidHandler as InvalidHandler
from ._errors import LifecycleMisuse as LifecycleMisuse
from ._errors import PublishTimeout as PublishTimeout
from ._errors import PublishUnconfirmed as PublishUnconfirmed
from ._errors import QueueFull as QueueFull
from ._errors import TransportError as TransportError
from ._errors import Unauthorized as Unauthorized
from ._middleware import CallNext as CallNext
from ._middleware import HandleMiddleware as HandleMiddleware
from ._middleware import HandlerCall as HandlerCall
from ._middleware import PublishMiddleware as PublishMiddleware
from ._stats import TypeStats as TypeStats
from ._subscription import Subscription as Subscription
from ._transport import BrokerStats as BrokerStats
from ._transport import Receipt as Receipt
from ._transport import Source as Source
from ._transport import Transport as Transport
from ._transport import Verdict as Verdict
from ._types import DropReason as DropReason
from ._types import Lifecycle as Lifecycle
from ._version import __version__ as __version__

__all__ = [
    "BrokerStats",
    "CallNext",
    "DeadLetter",
    "DeadLetterReason",
    "Dispatcher",
    "DispatcherClosed",
    "DropReason",
    "EventcoreError",
    "Grants",
    "HandleMiddleware",
    "HandlerCall",
    "HandlerResult",
    "HandlerTimeout",
    "Installed",
    "InvalidConfiguration",
    "InvalidEvent",
    "InvalidHandler",
    "Lifecycle",
    "LifecycleMisuse",
    "Outcome",
    "Overflow",
    "Policy",
    "Principal",
    "PublishMiddleware",
    "PublishTimeout",
    "PublishUnconfirmed",
    "QueueFull",
    "Receipt",
    "Retry",
    "Source",
    "Subscription",
    "Transport",
    "TransportError",
    "TypeConfig",
    "TypeStats",
    "Unauthorized",
    "Verdict",
    "__version__",
    "acting_as",
    "current_principal",
]
