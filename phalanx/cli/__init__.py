"""The `phalanx` command line."""

from . import _demo as _demo  # registers `phalanx demo`
from . import _demo_budget as _demo_budget  # registers `phalanx demo budget`
from . import _demo_memory as _demo_memory  # registers `phalanx demo memory`
from . import _demo_saga as _demo_saga  # registers `phalanx demo saga`
from . import _demo_vote as _demo_vote  # registers `phalanx demo vote`
from . import _eval as _eval  # registers `phalanx eval`
from . import _fleet as _fleet  # registers `phalanx submit`, `worker` and `workers`
from . import _inspect as _inspect  # registers `phalanx runs`, `events` and `show`
from . import _pictures as _pictures  # registers `phalanx timeline` and `diagram`
from . import _simulate as _simulate  # registers `phalanx simulate`
from . import _tools as _tools  # registers `phalanx dlq ...` and `phalanx tools ...`
from . import _trace as _trace  # registers `phalanx trace`
from . import _ui as _ui  # registers `phalanx ui`
from ._app import app as app
from ._app import main as main
