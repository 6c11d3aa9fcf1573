"""The OpenTelemetry base every layer traces through: no domain, no phalanx imports.

Each layer owns its spans and metrics next to its code (`durable/_spans.py` for runs,
steps and retries; `agents/_spans.py` for `invoke_agent` and `chat`; `tools/_spans.py`
for `execute_tool`, the dead-letter queue and the breaker; `patterns/_spans.py` for
fan-outs), and `phalanx.observe` sits on top with the SDK configuration, the exporters
and the span tree read back from a journal. What they share lives here: the tracer and
the meter, the pinned names (`semconv`), the content-capture switch and the redactor,
and the few mechanics every span helper needs (marking a span failed, spans exported
only when work ran under them, a span's ids as the journal stores them).

The layers, bottom to top (an import only ever points down)::

    _telemetry  <  journal  <  durable  <  agents, tools, patterns  <  observe, cli

This package imports nothing else from phalanx, so it can sit under the journal; the
journal in turn knows nothing of telemetry. Its `Metadata` holds a trace id and a span
id as plain hex strings: `span_ids` gives them for a span, `remote_context` turns them
back into a parent, and `durable` (the single writer of a run's stream) stamps them
into the metadata it appends.
"""

from . import semconv as semconv
from ._api import DURATION_BUCKETS as DURATION_BUCKETS
from ._api import Deferred as Deferred
from ._api import current as current
from ._api import deferred_span as deferred_span
from ._api import error_type as error_type
from ._api import innermost_deferred as innermost_deferred
from ._api import mark_executed as mark_executed
from ._api import meter as meter
from ._api import remote_context as remote_context
from ._api import span_ids as span_ids
from ._api import tracer as tracer
from ._content import REDACTED as REDACTED
from ._content import Redactor as Redactor
from ._content import capture_content as capture_content
from ._content import dumps as dumps
