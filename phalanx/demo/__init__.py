"""The demos: research (a fan-out where one sub-agent silently hangs) and memory (lost updates)."""

from ._memory import memory_demo as memory_demo
from ._memory import plan_agent as plan_agent
from ._scenario import AGENTS as AGENTS
from ._scenario import DEFAULT_QUESTION as DEFAULT_QUESTION
from ._scenario import parse_faults as parse_faults
from ._scenario import real_model_configured as real_model_configured
from ._scenario import research as research
from ._scenario import sub_agent as sub_agent
