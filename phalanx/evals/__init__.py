"""Evals: rubrics written first, scored over recorded runs, replays as regression tests.

A `Rubric` (YAML, JSON or a dict; checked on load) lists criteria, each with an
evaluator: deterministic checks (`json_schema`, `contains`, `regex`, `tool_calls`,
`latency`, `token_budget`, `citations`, `status`), the multi-agent failure modes the
journal shows (`step_repetition`, `termination_unawareness`, `premature_termination`,
`unacknowledged_partial`, `ignored_tool_errors`, `unresolved_disagreement`), or an LLM
`judge`. Runs are read back from the journal (`load_run`), never re-run, except by
`evaluate(..., replay_of=RUN)`, which re-runs a recorded run's inputs and reports the
difference. `evaluate` journals its work in an eval run of its own (events
`JudgeStarted`, `JudgeVerdict`, `JudgeCompared`; `EvalRecorded` in `evals:RUN`);
`score_runs` scores deterministic criteria without writing; `assert_passes` is the
helper for a project's tests.
"""

from .._errors import JudgeError as JudgeError
from .._errors import RubricError as RubricError
from ._assert import assert_passes as assert_passes
from ._eval_run import evals_stream as evals_stream
from ._eval_run import evaluate as evaluate
from ._eval_run import evaluation as evaluation
from ._eval_run import recorded_evals as recorded_evals
from ._eval_run import score_runs as score_runs
from ._junit import junit_xml as junit_xml
from ._recorded import ChildIndex as ChildIndex
from ._recorded import ModelTurn as ModelTurn
from ._recorded import RecordedRun as RecordedRun
from ._recorded import ToolCallSeen as ToolCallSeen
from ._recorded import load_run as load_run
from ._registry import Evaluator as Evaluator
from ._registry import Finding as Finding
from ._registry import evaluators as evaluators
from ._rubric import Criterion as Criterion
from ._rubric import JudgeConfig as JudgeConfig
from ._rubric import Rubric as Rubric
from ._rubric import load_rubric as load_rubric
from ._score import Agreement as Agreement
from ._score import CriterionResult as CriterionResult
from ._score import EvalReport as EvalReport
from ._score import RunScore as RunScore
from ._score import cohen_kappa as cohen_kappa
