"""Models and agents: the Model protocol, adapters, the scripted model, the Agent, budgets."""

from typing import TYPE_CHECKING, Any

from .._errors import AgentError as AgentError
from .._errors import AgentTimeoutError as AgentTimeoutError
from .._errors import BudgetExceededError as BudgetExceededError
from .._errors import MaxTurnsExceededError as MaxTurnsExceededError
from .._errors import MessageTooLargeError as MessageTooLargeError
from .._errors import ModelConnectionError as ModelConnectionError
from .._errors import ModelError as ModelError
from .._errors import ModelRateLimitedError as ModelRateLimitedError
from .._errors import ModelResponseError as ModelResponseError
from .._errors import ModelTimeoutError as ModelTimeoutError
from .._errors import OutputValidationError as OutputValidationError
from ._agent import Agent as Agent
from ._agent import AgentResult as AgentResult
from ._agent import ToolCallRecord as ToolCallRecord
from ._budget import DEFAULT_MAX_TOKENS as DEFAULT_MAX_TOKENS
from ._budget import Budget as Budget
from ._budget import BudgetAction as BudgetAction
from ._budget import BudgetLedger as BudgetLedger
from ._budget import Prices as Prices
from ._budget import open_budget as open_budget
from ._budget import run_ledger as run_ledger
from ._faults import Fault as Fault
from ._faults import FaultyModel as FaultyModel
from ._lenient import LenientToolCalls as LenientToolCalls
from ._messages import Message as Message
from ._messages import ModelRequest as ModelRequest
from ._messages import ModelResponse as ModelResponse
from ._messages import StreamChunk as StreamChunk
from ._messages import ToolCall as ToolCall
from ._messages import ToolSpec as ToolSpec
from ._messages import Usage as Usage
from ._model import Model as Model
from ._payload import PayloadLimit as PayloadLimit
from ._payload import check_payload as check_payload
from ._registry import MODEL_ENV as MODEL_ENV
from ._registry import model_from_env as model_from_env
from ._registry import model_from_spec as model_from_spec
from ._scripted import Rule as Rule
from ._scripted import Script as Script
from ._scripted import ScriptedModel as ScriptedModel
from ._scripted import Turn as Turn
from ._tokens import TOKEN_ESTIMATE_METHOD as TOKEN_ESTIMATE_METHOD
from ._tokens import estimate_json as estimate_json
from ._tokens import estimate_request as estimate_request
from ._tokens import estimate_tokens as estimate_tokens

if TYPE_CHECKING:
    from ._anthropic import AnthropicModel as AnthropicModel
    from ._openai import OpenAICompatibleModel as OpenAICompatibleModel


def __getattr__(name: str) -> Any:
    # The provider SDKs take a third of a second to import: only when asked for.
    if name == "OpenAICompatibleModel":
        from ._openai import OpenAICompatibleModel

        return OpenAICompatibleModel
    if name == "AnthropicModel":
        from ._anthropic import AnthropicModel

        return AnthropicModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
