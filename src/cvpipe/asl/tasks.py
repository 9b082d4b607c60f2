"""The edge of the interpreter: Task states hand their work to service integrations.

The core knows no service. A caller builds a ``TaskRegistry`` that maps Resource strings to
handlers and gives it to the engine; everything AWS-shaped lives in ``cvpipe.integrations``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .callbacks import TaskTokens
from .errors import RUNTIME, StatesError


@dataclass(frozen=True)
class TaskRequest:
    """What a Task state asks of its integration."""

    resource: str
    parameters: Any
    context: dict[str, Any]
    """A copy of the context object (``$$``): Execution, State (incl. RetryCount), StateMachine."""
    timeout: float | None = None
    """Seconds left before the task times out (``TimeoutSeconds``), or None."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the task must stop early: timeout, a failed Map sibling, an aborted execution."""
    emit: Callable[[str, dict[str, Any]], None] = lambda event_type, details: None
    """Appends an event of the integration's own to the execution history."""
    tokens: TaskTokens = field(default_factory=TaskTokens)
    """The engine's task tokens: where an integration sends SendTaskSuccess/Failure/Heartbeat calls."""


class TaskHandler(Protocol):
    def __call__(self, request: TaskRequest, /) -> Any:
        """Return the task's result (JSON-compatible) or raise ``StatesError``."""


class TaskRegistry:
    """Resolves a Task state's ``Resource`` to the handler that runs it."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], TaskHandler]] = []

    def register(self, pattern: str | re.Pattern[str], handler: TaskHandler) -> None:
        """Route resources matching ``pattern`` (a literal string, or a regex matched in full)."""
        compiled = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        self._routes.append((compiled, handler))

    def resolve(self, resource: str) -> TaskHandler:
        for pattern, handler in self._routes:
            if pattern.fullmatch(resource):
                return handler
        raise StatesError(RUNTIME, f"no service integration is available for resource {resource!r}")
