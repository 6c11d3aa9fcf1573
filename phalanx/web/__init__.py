"""The local dashboard, `phalanx ui`: runs (live), one run drawn, the DLQ, tools, memories.

A Starlette app with server-rendered pages and one small script, no Node build. It
reads the journal through the public API and the run model in `phalanx.observe`, and
writes only through the API the CLI uses (`DeadLetterQueue`). Bound to 127.0.0.1
unless told otherwise; any other address requires the printed token on every request;
POSTs are refused cross-site (see `_security.py`).
"""

from ._app import Dashboard as Dashboard
from ._pages import redact as redact
from ._pages import run_page as run_page
from ._security import needs_token as needs_token
from ._serve import DEFAULT_HOST as DEFAULT_HOST
from ._serve import DEFAULT_PORT as DEFAULT_PORT
from ._serve import serve as serve
