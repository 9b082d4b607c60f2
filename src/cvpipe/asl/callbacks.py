"""Task tokens: the callback pattern (``.waitForTaskToken``) and task heartbeats.

A Task whose Resource ends in ``.waitForTaskToken`` hands ``$$.Task.Token`` to its integration and
then waits until someone answers with SendTaskSuccess or SendTaskFailure (a handler, or the caller
through the engine's API). SendTaskHeartbeat keeps a task with ``HeartbeatSeconds`` alive.
The answers carry AWS's error codes for the APIs' own failures (``InvalidToken``, ``TaskTimedOut``,
``InvalidOutput``), raised as ``TokenError``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

MAX_OUTPUT_BYTES = 262_144
MAX_ERROR_LENGTH = 256
MAX_CAUSE_LENGTH = 32_768


class TokenError(Exception):
    """A SendTask* call refused, with the API's error code (``InvalidToken``, ``TaskTimedOut``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Waiting:
    """One task waiting for its token to come back; ``wake`` is set on every answer and heartbeat."""

    token: str
    wake: threading.Event
    outcome: tuple[str, Any, Any] | None = None
    """``("success", output, None)`` or ``("failure", error, cause)``."""
    last_beat: float = field(default_factory=time.monotonic)


class TaskTokens:
    """The tokens of the tasks that wait for a callback; thread-safe."""

    def __init__(self) -> None:
        self._waiting: dict[str, Waiting] = {}
        self._closed: set[str] = set()
        self._lock = threading.Lock()

    def open(self, wake: threading.Event) -> Waiting:
        waiting = Waiting(secrets.token_urlsafe(96), wake)
        with self._lock:
            self._waiting[waiting.token] = waiting
        return waiting

    def close(self, waiting: Waiting) -> None:
        """The task has ended (answered, timed out or cancelled): its token is no longer valid."""
        with self._lock:
            self._waiting.pop(waiting.token, None)
            self._closed.add(waiting.token)

    def send_success(self, token: str, output: str) -> None:
        """SendTaskSuccess: ``output`` is JSON text, as in the API."""
        if len(output.encode("utf-8")) > MAX_OUTPUT_BYTES:
            raise TokenError("InvalidOutput", f"output is longer than {MAX_OUTPUT_BYTES} bytes")
        try:
            value = json.loads(output)
        except ValueError as exc:
            raise TokenError("InvalidOutput", f"output is not JSON text: {exc}") from None
        self._answer(token, ("success", value, None))

    def send_failure(self, token: str, error: str = "", cause: str = "") -> None:
        if len(error) > MAX_ERROR_LENGTH or len(cause) > MAX_CAUSE_LENGTH:
            raise TokenError(
                "ValidationException",
                f"error is at most {MAX_ERROR_LENGTH} and cause at most {MAX_CAUSE_LENGTH} characters",
            )
        self._answer(token, ("failure", error, cause))

    def send_heartbeat(self, token: str) -> None:
        waiting = self._find(token)
        waiting.last_beat = time.monotonic()
        waiting.wake.set()

    def _answer(self, token: str, outcome: tuple[str, Any, Any]) -> None:
        with self._lock:
            waiting = self._find_locked(token)
            self._waiting.pop(token)
            self._closed.add(token)
        waiting.outcome = outcome
        waiting.wake.set()

    def _find(self, token: str) -> Waiting:
        with self._lock:
            return self._find_locked(token)

    def _find_locked(self, token: str) -> Waiting:
        if token in self._waiting:
            return self._waiting[token]
        if token in self._closed:
            raise TokenError("TaskTimedOut", "Task Timed Out: the task of this token has already ended")
        raise TokenError("InvalidToken", "Invalid Token: no task is waiting for this token")
