"""Orchestration patterns on the durable runtime: fan-out with explicit outcomes."""

from ._gather import Branch as Branch
from ._gather import BranchOutcome as BranchOutcome
from ._gather import FanOutResult as FanOutResult
from ._gather import Policy as Policy
from ._gather import gather as gather
