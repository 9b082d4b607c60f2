"""A local interpreter of the Amazon States Language: runs a definition as Step Functions would.

Both query languages run: JSONPath (paths, intrinsic functions) and JSONata (``QueryLanguage``
at the top or per state; ``Arguments``, ``Output``, ``Assign``, ``Condition``, ``Items`` and
``{% %}`` expressions, evaluated by jsonata-python with the functions Step Functions adds), and
variables (``Assign``, ``$name``) in both, with their scopes and limits.

The core knows no AWS service: Task states reach services through a ``TaskRegistry`` that the caller
fills (see ``cvpipe.integrations``).

Where it differs from Step Functions, on purpose or by necessity:

- the distributed Map (ItemReader, ItemBatcher, ResultWriter, ToleratedFailure*) is rejected by
  validation with a clear reason;
- ``HeartbeatSeconds`` is enforced for callback tasks (``.waitForTaskToken``), whose tokens are
  answered through ``Engine.send_task_success``/``send_task_failure``/``send_task_heartbeat``;
- a task that times out or is cancelled is asked to stop (``TaskRequest.cancelled``) but cannot be
  killed: its handler's thread is abandoned.
"""

from .callbacks import TokenError
from .clock import RealClock, VirtualClock
from .engine import Engine, Execution, ExecutionResult
from .errors import DefinitionError, StatesError
from .history import Event
from .tasks import TaskRegistry, TaskRequest

__all__ = [
    "DefinitionError",
    "Engine",
    "Event",
    "Execution",
    "ExecutionResult",
    "RealClock",
    "StatesError",
    "TaskRegistry",
    "TaskRequest",
    "TokenError",
    "VirtualClock",
]
