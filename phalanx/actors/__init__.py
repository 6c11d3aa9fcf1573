"""Durable actors: long-lived agents with journaled, bounded mailboxes, supervised as in OTP.

An agent that lives beyond one call (a peer, a long-running specialist, a memory
manager, a supervisor of sub-agents) is a durable run whose workflow loops over its
mailbox (`mailbox(ctx)`): a journal stream, bounded across processes through the
store, each message handled exactly once (`delivery`, shared with the peers
pattern). A `Supervisor` restarts failed children as new child runs by OTP's
strategies and intensity limit, journaling each decision so a resumed supervisor
makes the same ones. `fail_after` / `move_on_after` are journaled deadline scopes.
"""

from ._ask import ask as ask
from ._ask import reply as reply
from ._deadline import DeadlineScope as DeadlineScope
from ._deadline import current_deadline as current_deadline
from ._deadline import fail_after as fail_after
from ._deadline import move_on_after as move_on_after
from ._mailbox import Mailbox as Mailbox
from ._mailbox import Message as Message
from ._mailbox import WhenFull as WhenFull
from ._mailbox import depth as depth
from ._mailbox import mailbox as mailbox
from ._mailbox import post as post
from ._mailbox import stop as stop
from ._mailbox import tell as tell
from ._supervision import Strategy as Strategy
from ._supervision import SupervisionPolicy as SupervisionPolicy
from ._supervisor import Actor as Actor
from ._supervisor import Supervisor as Supervisor
