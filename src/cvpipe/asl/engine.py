"""Executions: a validated definition run from its StartAt state on a thread of its own.

The context object ``$$`` names the execution as Step Functions would (its Id is an execution ARN
in the real format, in the local account), so definitions that pass ``$$.Execution.Name`` or
``$$.Execution.Id`` on to their tasks see the values they would see in the cloud.
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .callbacks import TaskTokens
from .clock import RealClock
from .distributed import MapRun, ObjectStorage
from .errors import RUNTIME, TIMEOUT, DefinitionError, StatesError
from .execution import Cancelled, Clock, Lane, Run
from .history import Event, History, Trace, text_details, timestamp_text, to_json_text
from .payload import check_text_size, copy_document
from .redrive import TaskJournal
from .states import StateMachine
from .tasks import TaskRegistry
from .validate import validate

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
ABORTED = "ABORTED"
MAX_HISTORY_EVENTS = 25_000  # events in one execution's history, as Step Functions keeps
END_EVENTS = {
    SUCCEEDED: "ExecutionSucceeded",
    FAILED: "ExecutionFailed",
    TIMED_OUT: "ExecutionTimedOut",
    ABORTED: "ExecutionAborted",
}


@dataclass(frozen=True)
class ExecutionResult:
    status: str
    """SUCCEEDED | FAILED | TIMED_OUT | ABORTED"""
    output: Any
    error: str | None
    cause: str | None
    history: list[Event]
    name: str
    arn: str
    map_runs: list[MapRun] = field(default_factory=list)
    """The Distributed Map runs of the execution, with their child executions and histories."""


class Execution:
    """A running execution (it starts when created): ``wait()`` for its result, or ``abort()`` it."""

    def __init__(
        self, machine: StateMachine, run: Run, input: Any, name: str, arn: str, timeout: float | None
    ) -> None:
        self.name = name
        self.arn = arn
        self._machine = machine
        self._run = run
        self._input = input
        self._abort_reason: tuple[str | None, str | None] = (None, None)
        self._result: ExecutionResult | None = None
        self._done = threading.Event()
        # The deadline is also checked on the run's clock (virtual time); this timer covers real time.
        self._timer = threading.Timer(timeout, run.expire) if timeout is not None else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()
        threading.Thread(target=self._execute, name=f"execution:{name}", daemon=True).start()

    @property
    def history(self) -> list[Event]:
        return self._run.history.events

    @property
    def done(self) -> bool:
        """Whether the execution has ended."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        """The result once the execution has ended; TimeoutError if it is still running after ``timeout``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"execution {self.name} is still running")
        assert self._result is not None
        return self._result

    def abort(self, error: str | None = None, cause: str | None = None, grace: float = 0.0) -> None:
        """Stop the execution (status ABORTED); running tasks are asked to stop via ``request.cancelled``.

        With a ``grace`` period the execution ends once its running tasks have ended, or after that
        many seconds: a task that completed meanwhile has its result written to the journal, so that
        a redrive does not do it again, and fewer handlers outlive the execution."""
        if not self._done.is_set():
            self._abort_reason = (error, cause)
            self._run.stop_grace = grace
            self._run.root.cancel()

    def _execute(self) -> None:
        trace = Trace(self._run.history)
        lane = Lane(self._run, self._run.root, trace)
        try:
            execution = self._run.context["Execution"]
            text = to_json_text(self._input)
            # Outside the trace: in AWS the first state's events name no previous event (previousEventId 0).
            if execution["RedriveCount"]:
                self._run.history.append("ExecutionRedriven", {"redriveCount": execution["RedriveCount"]}, 0)
            else:
                self._run.history.append(
                    "ExecutionStarted",
                    {**text_details("input", text), "roleArn": execution["RoleArn"]},
                    0,
                )
            check_text_size(text)
            lane.recorded(self._input, text)
            output = self._machine.run(lane, self._input)
            self._finish(SUCCEEDED, trace, output=output, output_text=lane.json_text(output))
        except StatesError as failure:
            self._finish(FAILED, trace, error=failure.error or None, cause=failure.cause or None)
        except Cancelled:
            if self._run.timed_out.is_set():
                self._finish(
                    TIMED_OUT, trace, error=TIMEOUT, cause="The execution ran longer than its TimeoutSeconds"
                )
            else:
                error, cause = self._abort_reason
                self._finish(ABORTED, trace, error=error, cause=cause)
        except Exception:  # a fault of the engine itself
            self._finish(
                FAILED,
                trace,
                error=RUNTIME,
                cause=f"internal error of the local engine:\n{traceback.format_exc()}",
            )
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._done.set()

    def _finish(
        self,
        status: str,
        trace: Trace,
        *,
        output: Any = None,
        output_text: str = "",
        error: str | None = None,
        cause: str | None = None,
    ) -> None:
        if status == SUCCEEDED:
            details = text_details("output", output_text)
        else:
            details = {key: value for key, value in (("error", error), ("cause", cause)) if value is not None}
        trace.emit(END_EVENTS[status], details, final=True)
        self._result = ExecutionResult(
            status, output, error, cause, self._run.history.events, self.name, self.arn, self._run.map_runs
        )


class Engine:
    """Runs Amazon States Language definitions (JSONPath) on this machine.

    ``tasks`` maps Task Resources to handlers; ``clock`` drives Wait states, retry back-off and
    timestamps (a ``VirtualClock`` makes waits instant); ``max_concurrency`` caps the threads of
    each Map and Parallel state on top of the definition's own MaxConcurrency. ``account_id``,
    ``region`` and ``partition`` make the ARNs of the context object (``$$.Execution.Id``, ...).
    ``objects`` is the object store Distributed Maps read items from and write results to.
    An execution whose history would outgrow ``max_history_events`` fails with ``States.Runtime``.
    """

    def __init__(
        self,
        tasks: TaskRegistry,
        clock: Clock | None = None,
        max_concurrency: int | None = None,
        *,
        account_id: str = "000000000000",
        region: str = "us-east-1",
        partition: str = "aws",
        objects: ObjectStorage | None = None,
        max_history_events: int = MAX_HISTORY_EVENTS,
    ) -> None:
        self.tasks = tasks
        self.clock = clock or RealClock()
        self.max_concurrency = max_concurrency
        self.account_id = account_id
        self.region = region
        self.partition = partition
        self.max_history_events = max_history_events
        self.tokens = TaskTokens()
        self.objects = objects

    def send_task_success(self, token: str, output: str) -> None:
        """SendTaskSuccess: ``output`` (JSON text) becomes the result of the task waiting for ``token``.
        Raises ``TokenError`` (``InvalidToken``, ``TaskTimedOut``, ``InvalidOutput``) as the API does."""
        self.tokens.send_success(token, output)

    def send_task_failure(self, token: str, error: str = "", cause: str = "") -> None:
        """SendTaskFailure: the task waiting for ``token`` fails with ``error`` and ``cause``."""
        self.tokens.send_failure(token, error, cause)

    def send_task_heartbeat(self, token: str) -> None:
        """SendTaskHeartbeat: the task waiting for ``token`` is still being worked on."""
        self.tokens.send_heartbeat(token)

    def run(self, definition: dict[str, Any] | str, input: Any = None, **options: Any) -> ExecutionResult:
        """Run to the end: ``start`` with the same arguments, then ``wait``."""
        return self.start(definition, input, **options).wait()

    def start(
        self,
        definition: dict[str, Any] | str,
        input: Any = None,
        *,
        name: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        timeout: float | None = None,
        state_machine_name: str = "StateMachine",
        journal: TaskJournal | None = None,
        start_time: datetime | None = None,
        redrive_count: int = 0,
        on_child_event: Callable[[str, Event], None] | None = None,
    ) -> Execution:
        """Validate ``definition`` (DefinitionError lists every problem) and start an execution.

        ``input`` is the execution input as a JSON-compatible value (None means ``{}``, as in AWS).
        ``timeout`` (seconds) overrides the definition's top-level TimeoutSeconds.
        ``on_event`` is called with every history event as it is appended, from any thread;
        ``on_child_event`` with (child execution ARN, event) for the events of the child executions
        of Distributed Maps, which have histories of their own.
        ``journal`` records the outcome of every Task state. A ``redrive_count`` above 0 redrives an
        execution (see ``redrive``): give the first attempt's ``start_time``, and a journal that holds
        the earlier attempts' outcomes, which tasks at the same place with the same input take instead
        of running again.
        """
        # The execution's own copy: its templates are compiled on first use (see payload), so a
        # definition dict that the caller changes afterwards must not be the one they came from.
        spec = copy_document(parse_definition(definition))
        validate(spec)
        name = name or str(uuid.uuid4())
        execution_input = {} if input is None else json.loads(json.dumps(input))
        region, account = self.region, self.account_id
        arn = f"arn:{self.partition}:states:{region}:{account}:execution:{state_machine_name}:{name}"
        now = self.clock.now()
        started = start_time or now
        timeout = timeout if timeout is not None else spec.get("TimeoutSeconds")
        context = {
            "Execution": {
                "Id": arn,
                "Name": name,
                "Input": execution_input,
                "StartTime": timestamp_text(started),
                "RoleArn": f"arn:{self.partition}:iam::{account}:role/{state_machine_name}Role",
                "RedriveCount": redrive_count,
                **({"RedriveTime": timestamp_text(now)} if redrive_count else {}),
            },
            "StateMachine": {
                "Id": f"arn:{self.partition}:states:{region}:{account}:stateMachine:{state_machine_name}",
                "Name": state_machine_name,
            },
        }
        run = Run(
            tasks=self.tasks,
            clock=self.clock,
            history=History(self.clock.now, on_event, self.max_history_events),
            context=context,
            region=region,
            max_concurrency=self.max_concurrency,
            tokens=self.tokens,
            objects=self.objects,
            deadline=now + timedelta(seconds=timeout) if timeout is not None else None,
            journal=journal,
            on_child_event=on_child_event,
        )
        return Execution(StateMachine(spec), run, execution_input, name, arn, timeout)


def parse_definition(definition: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(definition, dict):
        return definition
    try:
        spec = json.loads(definition)
    except ValueError as exc:
        raise DefinitionError([f"the definition is not JSON: {exc}"]) from exc
    if not isinstance(spec, dict):
        raise DefinitionError(["the definition must be a JSON object"])
    return spec
