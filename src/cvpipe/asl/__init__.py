"""A local interpreter of the Amazon States Language (JSONPath): runs a definition as Step Functions would.

The core knows no AWS service: Task states reach services through a ``TaskRegistry`` that the caller
fills (see ``cvpipe.integrations``).
"""

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
    "VirtualClock",
]
