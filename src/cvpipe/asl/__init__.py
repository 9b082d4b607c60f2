"""A local interpreter of the Amazon States Language: runs a definition as Step Functions would.

Both query languages run: JSONPath (paths, intrinsic functions) and JSONata (``QueryLanguage``
at the top or per state; ``Arguments``, ``Output``, ``Assign``, ``Condition``, ``Items`` and
``{% %}`` expressions, evaluated by jsonata-python with the functions Step Functions adds), and
variables (``Assign``, ``$name``) in both, with their scopes and limits. A Distributed Map reads
its items from the object store the engine is given (``ObjectStorage``), batches them, runs each
item or batch as a child execution with its own history, tolerates failures up to its thresholds
and writes its results back (ResultWriter); ``states:startExecution`` runs nested executions (see
``cvpipe.integrations.stepfunctions``).

The core knows no AWS service: Task states reach services through a ``TaskRegistry`` that the caller
fills (see ``cvpipe.integrations``).

Where it differs from Step Functions, on purpose or by necessity:

- a Distributed Map runs at most 64 child executions at once on local threads (MaxConcurrency is
  checked up to AWS's 10,000), and ResultWriter's Transformation is NONE only;
- ``HeartbeatSeconds`` is enforced for callback tasks (``.waitForTaskToken``), whose tokens are
  answered through ``Engine.send_task_success``/``send_task_failure``/``send_task_heartbeat``;
- a task that times out or is cancelled is asked to stop (``TaskRequest.cancelled``); an in-process
  handler cannot be killed, so its thread is abandoned (Lambda functions run in processes, which are).

docs/local-engine.md lists every known difference.
"""

from .callbacks import TokenError
from .clock import RealClock, VirtualClock
from .distributed import ObjectStorage
from .engine import Engine, Execution, ExecutionResult
from .errors import DefinitionError, StatesError
from .execution import Clock
from .history import Event
from .tasks import TaskRegistry, TaskRequest

__all__ = [
    "Clock",
    "DefinitionError",
    "Engine",
    "Event",
    "Execution",
    "ExecutionResult",
    "ObjectStorage",
    "RealClock",
    "StatesError",
    "TaskRegistry",
    "TaskRequest",
    "TokenError",
    "VirtualClock",
]
