"""Redrive: run an unsuccessful execution again without redoing what already succeeded.

Step Functions' RedriveExecution continues a failed, aborted or timed-out execution from its
unsuccessful steps, with the same input, name and start time; inside an inline Map or a Parallel
only the iterations and branches that failed or aborted run again, and ``$$.Execution.RedriveCount``
counts the redrives.

The local engine redrives by replay. While an execution runs, each Task state's outcome is written
to a ``TaskJournal``: the result its ResultSelector kept, or the error that one of its Catchers
caught. A redriven execution runs the definition from the start, and a Task state entered at the
same place (the same lane, state and entry count, with the same input) takes its recorded outcome
instead of calling its resource. The other states only compute on their input, so the execution
takes the same path back to where it stopped; tasks that had not finished, or whose error no
Catcher caught, run again. A journal line is written once the outcome is final, so a process killed
at any moment leaves at worst a task to redo.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

Outcome = dict[str, Any]
"""``{"result": value}`` or ``{"error": name, "cause": text}``."""


def input_digest(value: Any) -> str:
    """A short digest of a state's input: a recorded outcome is reused only for the same input."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TaskJournal:
    """Outcomes of Task states by place: those of earlier attempts (``recorded``), and a sink
    (``write``, called with one JSON-compatible entry per outcome) for this attempt's."""

    def __init__(
        self, recorded: Iterable[dict[str, Any]] = (), write: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self._recorded = {(entry["place"], entry["input"]): entry["outcome"] for entry in recorded}
        self._write = write
        self._lock = threading.Lock()

    def recall(self, place: str, state_input: Any) -> Outcome | None:
        if not self._recorded:
            return None
        return self._recorded.get((place, input_digest(state_input)))

    def record(self, place: str, state_input: Any, outcome: Outcome) -> None:
        if self._write is None:
            return
        entry = {"place": place, "input": input_digest(state_input), "outcome": outcome}
        with self._lock:
            self._write(entry)
