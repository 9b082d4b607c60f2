"""Live progress of a pipeline execution, read from its history events as they happen (and, locally,
from the events of the child executions that run the fold jobs)."""

from __future__ import annotations

import json
import threading
from typing import Any, TextIO

from . import contract
from .contract import PHASES


def _output(details: dict[str, Any]) -> Any:
    output = details.get("output")
    return json.loads(output) if isinstance(output, str) else output


def assigned(details: dict[str, Any], name: str) -> Any:
    """The value a ``StateExited`` event reports the state assigned to variable ``name``."""
    value = details["assignedVariables"][name]
    return json.loads(value) if isinstance(value, str) else value


class ProgressReporter:
    """An ``on_event`` callback that prints one line per change (rewritten in place on a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._lock = threading.Lock()
        self.k = 0
        self.round = 0
        self.jobs_total = 0
        self.jobs_done = 0
        self.jobs_failed = 0
        self.best: float | None = None
        self._last_line = ""
        self._round_done = False

    def __call__(self, event: Any) -> None:
        with self._lock:
            if self._update(event.type, event.details):
                self._show()

    def _update(self, event_type: str, details: dict[str, Any]) -> bool:
        if event_type.endswith("StateEntered") and details.get("name") in PHASES:
            self._print_line(PHASES[details["name"]])
            return False
        if event_type.endswith("StateExited"):
            name = details.get("name")
            if name == contract.START_TUNING:
                self.k = assigned(details, contract.CONFIG_VARIABLE)["dataset_info"]["k"]
            elif name == contract.PROPOSE_CANDIDATES:
                proposal = _output(details)
                if not proposal["candidates"]:
                    return False
                self.round = proposal["round"]
                self.jobs_total += len(proposal["candidates"]) * self.k
                return True
            elif name == contract.AGGREGATE_SCORES:
                tuning = assigned(details, contract.TUNING_VARIABLE)
                best = tuning.get("best")
                self.best = best["cv"]["mean"] if best else None
                # The fold jobs run in child executions, whose events only a local run sees: the
                # aggregated round says how many ran and failed, also when following an execution on AWS.
                self.jobs_done = self.jobs_total
                self.jobs_failed = sum(len(entry.get("failures") or []) for entry in tuning["history"])
                self._round_done = True
                return True
            elif name in contract.FOLD_FAILURE_STATES:
                self.jobs_failed += 1
            return False
        if (
            event_type in ("MapIterationSucceeded", "MapIterationFailed", "MapIterationAborted")
            and details.get("name") == contract.FOLD_MAP
        ):
            self.jobs_done += 1
            return True
        return False

    def _show(self) -> None:
        best = "-" if self.best is None else f"{self.best:.4f}"
        failed = f" ({self.jobs_failed} failed)" if self.jobs_failed else ""
        line = f"round {self.round}: fold jobs {self.jobs_done}/{self.jobs_total}{failed}, best so far {best}"
        if self._live:
            self._stream.write("\r" + line.ljust(len(self._last_line)))
            self._stream.flush()
            self._last_line = line
        elif self._round_done:
            self._print_line(line)
        self._round_done = False

    def _print_line(self, text: str) -> None:
        if self._live and self._last_line:
            self._stream.write("\n")
            self._last_line = ""
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._live and self._last_line:
                self._stream.write("\n")
                self._last_line = ""
