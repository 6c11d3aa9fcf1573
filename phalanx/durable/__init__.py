"""Durable workflows: steps journaled before and after, replayed after a crash."""

from .._errors import LeaseLostError as LeaseLostError
from . import lowlevel as lowlevel
from ._context import WorkflowContext as WorkflowContext
from ._history import STATUS_EVENTS as STATUS_EVENTS
from ._history import RunHistory as RunHistory
from ._history import RunStatus as RunStatus
from ._history import RunSummary as RunSummary
from ._history import occurred_at as occurred_at
from ._recover import Recovery as Recovery
from ._retry import RetryPolicy as RetryPolicy
from ._runner import RunOutcome as RunOutcome
from ._runtime import Runtime as Runtime
from ._runtime import open_runtime as open_runtime
from ._worker import Worker as Worker
from ._workflow import check_inputs as check_inputs
from ._workflow import is_workflow as is_workflow
from ._workflow import load_workflow as load_workflow
from ._workflow import workflow as workflow
