"""phalanx: a durable, observable runtime for multi-agent LLM systems."""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._errors import ActorError as ActorError
from ._errors import AgentError as AgentError
from ._errors import AgentTimeoutError as AgentTimeoutError
from ._errors import AskTimeoutError as AskTimeoutError
from ._errors import BudgetExceededError as BudgetExceededError
from ._errors import CircuitOpenError as CircuitOpenError
from ._errors import ClaimLostError as ClaimLostError
from ._errors import ConcurrencyError as ConcurrencyError
from ._errors import ConfigError as ConfigError
from ._errors import ConversationError as ConversationError
from ._errors import ConversationTimeoutError as ConversationTimeoutError
from ._errors import CorruptEventError as CorruptEventError
from ._errors import DeadLetterClosedError as DeadLetterClosedError
from ._errors import DeadLetterRetryError as DeadLetterRetryError
from ._errors import DeadlineExceededError as DeadlineExceededError
from ._errors import EscalationError as EscalationError
from ._errors import EventDataError as EventDataError
from ._errors import FencedError as FencedError
from ._errors import JudgeError as JudgeError
from ._errors import LeaseHeldError as LeaseHeldError
from ._errors import LeaseLostError as LeaseLostError
from ._errors import MailboxFullError as MailboxFullError
from ._errors import MaxTurnsExceededError as MaxTurnsExceededError
from ._errors import MCPCallError as MCPCallError
from ._errors import MCPConnectionError as MCPConnectionError
from ._errors import MCPProtocolError as MCPProtocolError
from ._errors import MCPToolError as MCPToolError
from ._errors import MemoryConflictError as MemoryConflictError
from ._errors import MemoryStaleError as MemoryStaleError
from ._errors import MemoryUnavailableError as MemoryUnavailableError
from ._errors import MemoryVersionError as MemoryVersionError
from ._errors import MessageTooLargeError as MessageTooLargeError
from ._errors import ModelConnectionError as ModelConnectionError
from ._errors import ModelError as ModelError
from ._errors import ModelRateLimitedError as ModelRateLimitedError
from ._errors import ModelResponseError as ModelResponseError
from ._errors import ModelTimeoutError as ModelTimeoutError
from ._errors import NoConsensusError as NoConsensusError
from ._errors import NonDeterminismError as NonDeterminismError
from ._errors import OutputValidationError as OutputValidationError
from ._errors import PartialResultError as PartialResultError
from ._errors import PayloadTooLargeError as PayloadTooLargeError
from ._errors import PeerFailedError as PeerFailedError
from ._errors import PhalanxError as PhalanxError
from ._errors import PictureFormatError as PictureFormatError
from ._errors import PlanError as PlanError
from ._errors import RoundLimitError as RoundLimitError
from ._errors import RubricError as RubricError
from ._errors import RunEndedError as RunEndedError
from ._errors import RunExistsError as RunExistsError
from ._errors import RunFailedError as RunFailedError
from ._errors import SagaDefinitionError as SagaDefinitionError
from ._errors import SignalTimeoutError as SignalTimeoutError
from ._errors import SimulationStuckError as SimulationStuckError
from ._errors import StepCrashLoopError as StepCrashLoopError
from ._errors import StepError as StepError
from ._errors import StoreCorruptError as StoreCorruptError
from ._errors import StoreError as StoreError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._errors import SupervisorEscalationError as SupervisorEscalationError
from ._errors import ToolArgumentsError as ToolArgumentsError
from ._errors import ToolAttemptError as ToolAttemptError
from ._errors import ToolDeadLetteredError as ToolDeadLetteredError
from ._errors import ToolError as ToolError
from ._errors import ToolFailed as ToolFailed
from ._errors import ToolTimeoutError as ToolTimeoutError
from ._errors import TopologyError as TopologyError
from ._errors import UnknownDeadLetterError as UnknownDeadLetterError
from ._errors import UnknownMemoryKeyError as UnknownMemoryKeyError
from ._errors import UnknownRunError as UnknownRunError
from ._errors import UserError as UserError
from ._errors import WorkflowImportError as WorkflowImportError
from ._errors import WorkflowInputError as WorkflowInputError
from .actors import Actor as Actor
from .actors import Mailbox as Mailbox
from .actors import Supervisor as Supervisor
from .actors import ask as ask
from .actors import fail_after as fail_after
from .actors import mailbox as mailbox
from .actors import move_on_after as move_on_after
from .actors import tell as tell
from .durable import RetryPolicy as RetryPolicy
from .durable import RunOutcome as RunOutcome
from .durable import Runtime as Runtime
from .durable import Worker as Worker
from .durable import WorkflowContext as WorkflowContext
from .durable import open_runtime as open_runtime
from .durable import workflow as workflow
from .journal import Event as Event
from .journal import EventStore as EventStore
from .journal import Lease as Lease
from .journal import Metadata as Metadata
from .journal import NewEvent as NewEvent
from .journal import store_from_url as store_from_url
from .memory import Memory as Memory
from .memory import open_memory_manager as open_memory_manager
from .patterns import Branch as Branch
from .patterns import BranchOutcome as BranchOutcome
from .patterns import FanOutResult as FanOutResult
from .patterns import ForwardRecovery as ForwardRecovery
from .patterns import Peer as Peer
from .patterns import Policy as Policy
from .patterns import Saga as Saga
from .patterns import SagaResult as SagaResult
from .patterns import SagaState as SagaState
from .patterns import SagaStep as SagaStep
from .patterns import TaskBoard as TaskBoard
from .patterns import VoteResult as VoteResult
from .patterns import converse as converse
from .patterns import gather as gather
from .patterns import vote as vote

# Tools need pydantic, which costs a tenth of a second to import: loaded on first use.
_TOOL_NAMES = frozenset(
    {"CircuitBreaker", "DeadLetterQueue", "Tool", "ToolUnavailable", "call_tool", "tool"}
)

if _TYPE_CHECKING:
    from .tools import CircuitBreaker as CircuitBreaker
    from .tools import DeadLetterQueue as DeadLetterQueue
    from .tools import Tool as Tool
    from .tools import ToolUnavailable as ToolUnavailable
    from .tools import call_tool as call_tool
    from .tools import tool as tool


def __getattr__(name: str) -> _Any:
    if name in _TOOL_NAMES:
        from . import tools

        return getattr(tools, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_TOOL_NAMES})
