"""The execution history: numbered events with the types and detail shapes Step Functions reports.

Every state type has ``<Type>StateEntered``/``<Type>StateExited`` events; Task, Map and Parallel add
their own (``TaskScheduled``, ``MapIterationStarted``, ...). An event's ``details`` is the inner
object; ``to_json`` files it under the key AWS uses (``stateEnteredEventDetails``, ...).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import RUNTIME, StatesError

logger = logging.getLogger(__name__)


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_json_text(value: Any) -> str:
    """JSON text as AWS prints payloads and history details carry them: no insignificant whitespace,
    key order kept, non-ASCII kept as is. (One encoder for every call: ``json.dumps`` with options
    builds a new one each time.)"""
    return _COMPACT.encode(value)


def timestamp_text(moment: datetime) -> str:
    """ISO 8601 with milliseconds and ``Z``, the form of ``$$.Execution.StartTime``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def details_key(event_type: str) -> str:
    """``TaskStateEntered`` -> ``stateEnteredEventDetails``; ``MapStateStarted`` -> ``mapStateStartedEventDetails``."""
    for suffix in ("StateEntered", "StateExited"):
        if event_type.endswith(suffix):
            return "state" + suffix[len("State") :] + "EventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    timestamp: datetime
    previous_event_id: int
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "timestamp": timestamp_text(self.timestamp),
            "previousEventId": self.previous_event_id,
        }
        if self.details:
            event[details_key(self.type)] = self.details
        return event


class History:
    """The events of one execution, numbered from 1; safe to append to from any thread.

    ``on_event`` is called under the history's lock, so listeners see events in id order. A listener
    only observes: its exceptions are logged, and the execution goes on.

    A history holds at most ``limit`` events. An event that would take the last place fails the
    execution instead, with ``States.Runtime``, which no Retry or Catch handles; the place is kept
    for the event that ends the execution (``final``).
    """

    def __init__(
        self,
        now: Callable[[], datetime],
        on_event: Callable[[Event], None] | None = None,
        limit: int | None = None,
    ) -> None:
        self._now = now
        self._on_event = on_event
        self.limit = limit
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def append(
        self, event_type: str, details: dict[str, Any], previous_event_id: int, *, final: bool = False
    ) -> Event:
        with self._lock:
            if self.limit is not None and not final and len(self._events) >= self.limit - 1:
                raise StatesError(
                    RUNTIME,
                    f"The execution history reached its limit of {self.limit:,} events; "
                    "split the work across executions (or child executions) to record fewer events",
                )
            event = Event(len(self._events) + 1, event_type, self._now(), previous_event_id, details)
            self._events.append(event)
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    logger.exception("the on_event listener failed on event %d (%s)", event.id, event_type)
            return event

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)


class Trace:
    """A cursor into the history for one sequential line of execution.

    Each event names the event before it on the same line (``previousEventId``), so the events of
    concurrent Map iterations and Parallel branches chain separately, as in AWS.
    """

    def __init__(self, history: History, last_event_id: int = 0) -> None:
        self.history = history
        self.last_event_id = last_event_id

    def emit(self, event_type: str, details: dict[str, Any] | None = None, *, final: bool = False) -> Event:
        event = self.history.append(event_type, details or {}, self.last_event_id, final=final)
        self.last_event_id = event.id
        return event

    def fork(self) -> Trace:
        return Trace(self.history, self.last_event_id)


def text_details(key: str, text: str, **fields: Any) -> dict[str, Any]:
    """Details carrying a JSON payload (``input``/``output``/``parameters``) as its text, untruncated."""
    return {**fields, key: text, f"{key}Details": {"truncated": False}}


def resource_details(resource: str) -> dict[str, str]:
    """``resourceType``/``resource`` as Task events split them.

    ``arn:aws:states:::lambda:invoke`` -> ``lambda`` / ``invoke``;
    ``arn:aws:states:::aws-sdk:s3:putObject`` -> ``aws-sdk:s3`` / ``putObject``;
    any other ARN -> its service / the whole ARN.
    """
    parts = resource.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "states":
        return {"resourceType": ":".join(parts[5:-1]), "resource": parts[-1]}
    if len(parts) >= 3 and parts[0] == "arn":
        return {"resourceType": parts[2], "resource": resource}
    return {"resourceType": "", "resource": resource}
