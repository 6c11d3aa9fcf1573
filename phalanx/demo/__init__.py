"""The demos: research (a silently hanging sub-agent), memory (lost updates), vote, saga."""

from ._budget import BUDGET_TOKENS as BUDGET_TOKENS
from ._budget import budget_demo as budget_demo
from ._budget import budget_sub_agent as budget_sub_agent
from ._memory import memory_demo as memory_demo
from ._memory import plan_agent as plan_agent
from ._saga import STEPS as STEPS
from ._saga import choreographed_saga_demo as choreographed_saga_demo
from ._saga import parse_saga_faults as parse_saga_faults
from ._saga import run_saga_demo as run_saga_demo
from ._saga import saga_demo as saga_demo
from ._scenario import AGENTS as AGENTS
from ._scenario import DEFAULT_QUESTION as DEFAULT_QUESTION
from ._scenario import parse_faults as parse_faults
from ._scenario import real_model_configured as real_model_configured
from ._scenario import research as research
from ._scenario import sub_agent as sub_agent
from ._vote import REPLICAS as REPLICAS
from ._vote import VOTE as VOTE
from ._vote import parse_vote_faults as parse_vote_faults
from ._vote import vote_demo as vote_demo
from ._vote import vote_replica as vote_replica
