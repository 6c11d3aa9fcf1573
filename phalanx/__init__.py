"""phalanx: a durable, observable runtime for multi-agent LLM systems."""

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._errors import ConcurrencyError as ConcurrencyError
from ._errors import CorruptEventError as CorruptEventError
from ._errors import EventDataError as EventDataError
from ._errors import FencedError as FencedError
from ._errors import InvalidStoreURLError as InvalidStoreURLError
from ._errors import LeaseHeldError as LeaseHeldError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import PhalanxError as PhalanxError
from ._errors import StoreError as StoreError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._errors import UserError as UserError
from .journal import Event as Event
from .journal import EventStore as EventStore
from .journal import Lease as Lease
from .journal import Metadata as Metadata
from .journal import NewEvent as NewEvent
from .journal import store_from_url as store_from_url
