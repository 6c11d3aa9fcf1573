"""Actors: bounded mailboxes, supervision, deadlines and cancellation, in process.

Agents are actors (DESIGN.md): each owns its state and takes one message at a time
from a bounded mailbox; parents supervise children as in OTP; deadlines only shrink
down the tree and every descendant is stopped with its parent, so nothing is ever
orphaned. Time goes through the clock seam and ids through the entropy seam, so the
whole tree runs on a `VirtualClock` in simulations; message hooks and lifecycle
events are where a durable layer will plug in.
"""

from ._actor import Actor as Actor
from ._cell import Restart as Restart
from ._deadline import Deadline as Deadline
from ._deadline import DeadlineScope as DeadlineScope
from ._deadline import current_deadline as current_deadline
from ._deadline import fail_after as fail_after
from ._deadline import move_on_after as move_on_after
from ._envelope import Envelope as Envelope
from ._events import ActorEvent as ActorEvent
from ._events import EventHook as EventHook
from ._events import EventKind as EventKind
from ._heartbeat import HeartbeatPolicy as HeartbeatPolicy
from ._hooks import MessageHooks as MessageHooks
from ._mailbox import MailboxPolicy as MailboxPolicy
from ._ref import ActorRef as ActorRef
from ._supervisor import Strategy as Strategy
from ._supervisor import SupervisionPolicy as SupervisionPolicy
from ._system import ActorSystem as ActorSystem
from ._system import open_actor_system as open_actor_system
