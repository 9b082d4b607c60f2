"""Step Functions as a service of its own: ``states:startExecution`` runs a nested execution of a
state machine given to the engine, as the optimised integration does.

- ``arn:aws:states:::states:startExecution``: starts the child and returns ``{ExecutionArn, StartDate}``;
- ``...startExecution.sync``: waits for it; the result is its DescribeExecution, ``Output`` as JSON text;
- ``...startExecution.sync:2``: the same with ``Input`` and ``Output`` as JSON values.

A child that does not succeed fails the task with ``States.TaskFailed`` and the DescribeExecution
as the cause (JSON text); stopping the task (timeout, a failed sibling) aborts the child. As in every
optimised integration's result, StartDate and StopDate are epoch milliseconds, and JSON text is compact.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from typing import Any

from cvpipe.asl import Engine, Execution, ExecutionResult, StatesError, TaskRegistry, TaskRequest
from cvpipe.asl.errors import RUNTIME, TASK_FAILED
from cvpipe.asl.validate import NAME_CHARACTER

START_EXECUTION = "arn:aws:states:::states:startExecution"
_MACHINE_ARN = re.compile(r"arn:aws[\w-]*:states:[\w-]+:\d{12}:stateMachine:(?P<name>[\w-]{1,80})")
_POLL_SECONDS = 0.05
_EXECUTION_NAME = re.compile(NAME_CHARACTER + "{1,80}")


class LocalStateMachines:
    """State machines by name (their ARNs name them too): the definitions nested executions run."""

    def __init__(self, engine: Engine, definitions: dict[str, dict[str, Any] | str]) -> None:
        self.engine = engine
        self.definitions = definitions
        self._started: dict[tuple[str, str], tuple[Any, Execution]] = {}
        self._lock = threading.Lock()

    def start_execution(self, request: TaskRequest) -> Any:
        """``startExecution``, ``.sync`` and ``.sync:2``."""
        parameters = request.parameters if isinstance(request.parameters, dict) else {}
        name = self._machine_name(parameters.get("StateMachineArn"))
        child_input = parameters.get("Input", {})
        if isinstance(child_input, str):  # the API takes JSON text; the integration also takes a value
            try:
                child_input = json.loads(child_input)
            except ValueError:
                raise StatesError(RUNTIME, "startExecution: Input is not JSON text") from None
        execution = self._start(name, parameters.get("Name"), child_input)
        if not request.resource.endswith((".sync", ".sync:2")):
            return {"ExecutionArn": execution.arn, "StartDate": _epoch_ms(self.engine.clock.now())}
        while True:
            try:
                result = execution.wait(_POLL_SECONDS)
                break
            except TimeoutError:
                if request.cancelled.is_set():
                    execution.abort("States.Aborted", "the parent task was stopped")
        described = self._describe(result, name, child_input, request.resource.endswith(":2"))
        if result.status != "SUCCEEDED":
            raise StatesError(TASK_FAILED, _json_text(described))
        return described

    def _start(self, machine: str, name: Any, child_input: Any) -> Execution:
        """A new execution, or the running one StartExecution is idempotent for: an execution name is
        unique in its state machine (here, for this engine's life) unless the same input is sent again
        while it runs."""
        if name is None:
            return self.engine.start(self.definitions[machine], child_input, state_machine_name=machine)
        if not isinstance(name, str) or not _EXECUTION_NAME.fullmatch(name):
            raise StatesError(
                "StepFunctions.InvalidNameException",
                f"Invalid Name: {name!r} (1 to 80 characters, without whitespace, brackets, wildcards, "
                "control or special characters)",
            )
        with self._lock:
            earlier = self._started.get((machine, name))
            if earlier is not None:
                earlier_input, execution = earlier
                if earlier_input == child_input and not execution.done:
                    return execution
                raise StatesError(
                    "StepFunctions.ExecutionAlreadyExistsException",
                    f"Execution Already Exists: '{execution.arn}'",
                )
            execution = self.engine.start(
                self.definitions[machine], child_input, name=name, state_machine_name=machine
            )
            self._started[(machine, name)] = (child_input, execution)
            return execution

    def _machine_name(self, arn: Any) -> str:
        match = _MACHINE_ARN.fullmatch(arn) if isinstance(arn, str) else None
        name = match["name"] if match else arn
        if not isinstance(name, str) or name not in self.definitions:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise StatesError(
                "StepFunctions.StateMachineDoesNotExistException",
                f"State Machine Does Not Exist: {arn!r} (the engine was given: {known})",
            )
        return name

    def _describe(
        self, result: ExecutionResult, name: str, child_input: Any, as_json: bool
    ) -> dict[str, Any]:
        events = result.history
        described: dict[str, Any] = {
            "ExecutionArn": result.arn,
            "StateMachineArn": result.arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
            "Name": result.name,
            "Status": result.status,
            "StartDate": _epoch_ms(events[0].timestamp),
            "StopDate": _epoch_ms(events[-1].timestamp),
            "Input": child_input if as_json else _json_text(child_input),
            "InputDetails": {"Included": True},
        }
        if result.status == "SUCCEEDED":
            described["Output"] = result.output if as_json else _json_text(result.output)
            described["OutputDetails"] = {"Included": True}
        else:
            described.update({k: v for k, v in (("Error", result.error), ("Cause", result.cause)) if v})
        return described


def _epoch_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def register_step_functions(
    registry: TaskRegistry, engine: Engine, definitions: dict[str, dict[str, Any] | str]
) -> LocalStateMachines:
    """Route ``states:startExecution`` (and ``.sync``, ``.sync:2``) to nested executions of
    ``definitions`` (state machine name -> definition) on ``engine``."""
    machines = LocalStateMachines(engine, definitions)
    registry.register(re.compile(re.escape(START_EXECUTION) + r"(\.sync(:2)?)?"), machines.start_execution)
    return machines
