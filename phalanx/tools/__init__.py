"""Tools agents call: declaration, schemas, reliable calls, breakers, the dead-letter queue."""

from ._breaker import CircuitBreaker as CircuitBreaker
from ._call import ToolCallReport as ToolCallReport
from ._call import ToolUnavailable as ToolUnavailable
from ._call import await_dead_letter as await_dead_letter
from ._call import call_tool as call_tool
from ._call import reliable_call as reliable_call
from ._dlq import DeadLetterEntry as DeadLetterEntry
from ._dlq import DeadLetterQueue as DeadLetterQueue
from ._mcp import MCPHttpServer as MCPHttpServer
from ._mcp import MCPStdioServer as MCPStdioServer
from ._mcp import MCPTools as MCPTools
from ._mcp import open_mcp_tools as open_mcp_tools
from ._metrics import ToolStats as ToolStats
from ._metrics import tool_stats as tool_stats
from ._notify import Escalation as Escalation
from ._notify import LogNotifier as LogNotifier
from ._notify import Notifier as Notifier
from ._notify import WebhookNotifier as WebhookNotifier
from ._notify import escalate as escalate
from ._report import troubled_tool_calls as troubled_tool_calls
from ._schema import schema_model as schema_model
from ._tool import Tool as Tool
from ._tool import ToolSpec as ToolSpec
from ._tool import encode_result as encode_result
from ._tool import tool as tool
