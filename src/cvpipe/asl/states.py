"""The states of the Amazon States Language, one class per type, and the machine that runs them.

A ``StateMachine`` (the top level, a Parallel branch, a Map's ItemProcessor) moves from state to
state along one ``Lane``: a sequential line of execution with its own chain of history events and
its own cancellation ``Scope``. Each state entry emits ``<Type>StateEntered``, does its work and
emits ``<Type>StateExited``.

Input and output processing follows the spec's table: Pass, Task, Parallel and Map take
InputPath + Parameters (Map: InputPath, then ItemSelector per item), Task, Parallel and Map also
ResultSelector; every type but Fail takes OutputPath, and Pass, Task, Parallel and Map ResultPath.
Validation keeps fields off the types that do not allow them, so the ``payload`` helpers can read
whatever fields a state has.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from .callbacks import Waiting
from .choice import next_state
from .errors import HEARTBEAT_TIMEOUT, RUNTIME, TASK_FAILED, TIMEOUT, StatesError
from .execution import Cancelled, Lane, Scope, run_concurrently
from .history import (
    data_details,
    resource_details,
    to_json_text,
)
from .intrinsics import evaluate_intrinsic, is_intrinsic
from .paths import get_path
from .payload import (
    apply_template,
    check_payload_size,
    fill_parameters,
    process_input,
    process_output,
    select_input,
)
from .retry import error_output, find_catcher, with_retries
from .tasks import TaskRequest

INLINE_MAP_CONCURRENCY = 40
"""Step Functions runs at most 40 iterations of an inline Map at once, whatever MaxConcurrency says."""

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (upper-case ``T``, ``Z`` or a numeric offset), or None."""
    if not isinstance(value, str) or not TIMESTAMP.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def select_integer(
    spec: dict[str, Any], field_name: str, data: Any, context: dict[str, Any], minimum: int
) -> int:
    """The integer that a ``...Path`` field (SecondsPath, TimeoutSecondsPath, ...) selects from ``data``."""
    value = get_path(spec[field_name], data, context)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StatesError(
            RUNTIME,
            f"{field_name} {spec[field_name]!r} must select an integer >= {minimum}, not {to_json_text(value)}",
        )
    return value


class StateRuntimeError(StatesError):
    """States.Runtime with the failing state named in the cause, as Step Functions words it."""

    def __init__(self, state: str, event_id: int, cause: str) -> None:
        super().__init__(
            RUNTIME,
            f"An error occurred while executing the state '{state}' (entered at the event id #{event_id}). {cause}",
        )


class State:
    type: ClassVar[str]
    abortable: ClassVar[bool] = False
    """Whether the type has a ``<Type>StateAborted`` event (its work can be interrupted)."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.spec = spec
        self.next: str | None = spec.get("Next")

    def run(self, lane: Lane, raw_input: Any) -> tuple[Any, str | None]:
        """Enter the state with ``raw_input``; its output and the next state's name (None: the end)."""
        entered = lane.emit(f"{self.type}StateEntered", data_details("input", raw_input, name=self.name))
        try:
            output, next_name = self.execute(lane, raw_input, entered.timestamp)
            check_payload_size(output)
        except Cancelled:
            if self.abortable:
                lane.emit(f"{self.type}StateAborted")
            raise
        except StatesError as failure:
            if failure.error == RUNTIME and not isinstance(failure, StateRuntimeError):
                raise StateRuntimeError(self.name, entered.id, failure.cause) from failure
            raise
        lane.emit(f"{self.type}StateExited", data_details("output", output, name=self.name))
        return output, next_name

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        raise NotImplementedError


class Pass(State):
    type = "Pass"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        effective = process_input(self.spec, raw_input, context)
        result = self.spec.get("Result", effective)
        return process_output(self.spec, raw_input, result, context), self.next


class Choice(State):
    type = "Choice"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        effective = process_input(self.spec, raw_input, context)
        return process_output(self.spec, raw_input, effective, context), next_state(
            self.spec, effective, context
        )


class Succeed(State):
    type = "Succeed"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        return process_output(
            self.spec, raw_input, process_input(self.spec, raw_input, context), context
        ), None


class Fail(State):
    type = "Fail"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        raise StatesError(self._text("Error", raw_input, context), self._text("Cause", raw_input, context))

    def _text(self, field_name: str, raw_input: Any, context: dict[str, Any]) -> str:
        """Error or Cause: the literal, or what ErrorPath/CausePath (a path or an intrinsic) yields."""
        if field_name in self.spec:
            return self.spec[field_name]
        expression = self.spec.get(f"{field_name}Path")
        if expression is None:
            return ""
        value = (
            evaluate_intrinsic(expression, raw_input, context)
            if is_intrinsic(expression)
            else get_path(expression, raw_input, context)
        )
        if not isinstance(value, str):
            raise StatesError(
                RUNTIME, f"{field_name}Path {expression!r} must yield a string, not {to_json_text(value)}"
            )
        return value


class Wait(State):
    type = "Wait"
    abortable = True

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        effective = process_input(self.spec, raw_input, context)
        lane.sleep(self._seconds(effective, context, lane.run.clock.now()))
        return process_output(self.spec, raw_input, effective, context), self.next

    def _seconds(self, effective: Any, context: dict[str, Any], now: datetime) -> float:
        spec = self.spec
        if "Seconds" in spec:
            return spec["Seconds"]
        if "SecondsPath" in spec:
            return select_integer(spec, "SecondsPath", effective, context, minimum=0)
        if "Timestamp" in spec:
            moment = parse_timestamp(spec["Timestamp"])
        else:
            moment = parse_timestamp(get_path(spec["TimestampPath"], effective, context))
            if moment is None:
                raise StatesError(
                    RUNTIME, f"TimestampPath {spec['TimestampPath']!r} must select an RFC 3339 timestamp"
                )
        assert moment is not None  # a literal Timestamp was validated with the definition
        return max((moment - now).total_seconds(), 0.0)


class Recoverable(State):
    """A state with Retry and Catch (Task, Parallel, Map): ``attempt`` is what a Retrier repeats."""

    abortable = True

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        def attempt(retry_count: int) -> Any:
            return self.attempt(lane, raw_input, lane.context(self.name, entered, retry_count))

        try:
            return with_retries(self.spec.get("Retry", []), attempt, lane.sleep), self.next
        except StatesError as failure:
            catcher = find_catcher(self.spec.get("Catch", []), failure)
            if catcher is None:
                raise
            # A Catcher's ResultPath places the error output into the raw input; no OutputPath applies.
            placement = {"ResultPath": catcher.get("ResultPath", "$")}
            return process_output(
                placement, raw_input, error_output(failure), lane.context(self.name, entered)
            ), catcher["Next"]

    def attempt(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> Any:
        raise NotImplementedError


WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"
"""The integration pattern of a Resource that waits for SendTaskSuccess/SendTaskFailure."""


class Task(Recoverable):
    type = "Task"

    def attempt(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> Any:
        selected = select_input(self.spec, raw_input, context)
        timeout = self._seconds("TimeoutSeconds", selected, context)
        heartbeat = self._seconds("HeartbeatSeconds", selected, context)
        wake = threading.Event()
        waiting = lane.run.tokens.open(wake) if self.spec["Resource"].endswith(WAIT_FOR_TASK_TOKEN) else None
        try:
            if waiting is not None:
                context = {**context, "Task": {"Token": waiting.token}}
            parameters = fill_parameters(self.spec, selected, context)
            check_payload_size(parameters)
            result = self._invoke(lane, parameters, context, timeout, heartbeat, wake, waiting)
        finally:
            if waiting is not None:
                lane.run.tokens.close(waiting)
        return process_output(self.spec, raw_input, result, context)

    def _seconds(self, field_name: str, selected: Any, context: dict[str, Any]) -> int | None:
        """TimeoutSeconds or HeartbeatSeconds: the literal, or what its ``...Path`` selects from the input
        that InputPath kept (as AWS resolves them, before Parameters)."""
        if f"{field_name}Path" in self.spec:
            return select_integer(self.spec, f"{field_name}Path", selected, context, minimum=1)
        return self.spec.get(field_name)

    def _invoke(
        self,
        lane: Lane,
        parameters: Any,
        context: dict[str, Any],
        timeout: int | None,
        heartbeat: int | None,
        wake: threading.Event,
        waiting: Waiting | None,
    ) -> Any:
        """Hand the work to the resource's integration on a thread of its own, so that a timeout or a
        cancellation can stop waiting for it (the handler is asked to stop through ``cancelled``).

        The task's time counts from its own start: real time, plus the virtual time its own handler
        slept on a VirtualClock. A callback task then waits for its token's answer; HeartbeatSeconds
        bounds the time between heartbeats (from the start, then from each SendTaskHeartbeat).
        """
        resource = self.spec["Resource"]
        handler = lane.run.tasks.resolve(resource.removesuffix(WAIT_FOR_TASK_TOKEN))
        described = resource_details(resource)
        scheduled: dict[str, Any] = {
            **described,
            "region": lane.run.region,
            "parameters": to_json_text(parameters),
        }
        if timeout is not None:
            scheduled["timeoutInSeconds"] = timeout
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = heartbeat
        lane.emit("TaskScheduled", scheduled)

        def emit(event_type: str, details: dict[str, Any]) -> None:
            lane.emit(event_type, details)

        request = TaskRequest(
            resource,
            copy.deepcopy(parameters),
            copy.deepcopy(context),
            timeout,
            emit=emit,
            tokens=lane.run.tokens,
        )
        lane.emit("TaskStarted", described)

        outcome: dict[str, Any] = {}
        clock = lane.run.clock

        def call() -> None:
            before = clock.thread_slept()
            try:
                outcome["result"] = handler(request)
            except BaseException as exc:  # reported as the task's failure below
                outcome["exception"] = exc
            outcome["slept"] = clock.thread_slept() - before
            wake.set()

        def on_cancel() -> None:
            request.cancelled.set()
            wake.set()

        detach = lane.scope.on_cancel(on_cancel)
        started = time.monotonic()
        threading.Thread(target=call, name=f"task:{self.name}", daemon=True).start()
        submitted = False
        try:
            while True:
                now = time.monotonic()
                deadlines = [started + timeout] if timeout is not None else []
                if waiting is not None and heartbeat is not None:
                    deadlines.append(waiting.last_beat + heartbeat)
                wake.wait(max(min(deadlines) - now, 0) if deadlines else None)
                wake.clear()
                if lane.scope.cancelled:
                    raise Cancelled()
                now = time.monotonic()
                if "exception" in outcome:
                    raise as_states_error(outcome["exception"])
                if "result" in outcome and timeout is not None and outcome["slept"] > timeout:
                    raise StatesError(TIMEOUT, f"the task did not finish within {timeout} seconds")
                if waiting is None and "result" in outcome:
                    result = json_copy(outcome["result"], f"the result of {resource}")
                    break
                if waiting is not None and "result" in outcome and not submitted:
                    submitted = True
                    output = json_copy(outcome["result"], f"the result of {resource}")
                    lane.emit("TaskSubmitted", {**described, **data_details("output", output)})
                if waiting is not None and waiting.outcome is not None and submitted:
                    kind, value, cause = waiting.outcome
                    if kind == "failure":
                        raise StatesError(value, cause)
                    result = value
                    break
                if timeout is not None and now >= started + timeout:
                    raise StatesError(TIMEOUT, f"the task did not finish within {timeout} seconds")
                if waiting is not None and heartbeat is not None and now >= waiting.last_beat + heartbeat:
                    raise StatesError(
                        HEARTBEAT_TIMEOUT, f"no heartbeat was received within {heartbeat} seconds"
                    )
            check_payload_size(result)
        except StatesError as failure:
            request.cancelled.set()
            kind = "TaskTimedOut" if failure.error in (TIMEOUT, HEARTBEAT_TIMEOUT) else "TaskFailed"
            lane.emit(kind, {**described, "error": failure.error, "cause": failure.cause})
            raise
        finally:
            detach()
        lane.emit("TaskSucceeded", {**described, **data_details("output", result)})
        return result


def as_states_error(exc: BaseException) -> StatesError:
    """A handler's exception as the task's error: its own StatesError, else States.TaskFailed."""
    if isinstance(exc, StatesError):
        return exc
    message = str(exc)
    return StatesError(TASK_FAILED, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def json_copy(value: Any, what: str) -> Any:
    """A detached, JSON-only copy of ``value``."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise StatesError(RUNTIME, f"{what} is not JSON: {exc}") from exc


class Concurrent(Recoverable):
    """Parallel and Map: their work runs on lanes of its own, at once; the first failure stops the rest."""

    def attempt(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> Any:
        try:
            outputs = self.run_lanes(lane, raw_input, context)
        except StatesError:
            lane.emit(f"{self.type}StateFailed")
            raise
        lane.emit(f"{self.type}StateSucceeded")
        return process_output(self.spec, raw_input, outputs, context)

    def run_lanes(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def fan_out(lane: Lane, count: int, limit: int, body: Callable[[int, Lane], Any]) -> list[Any]:
        """``body(i, lane_i)`` for ``i < count`` on lanes forked from ``lane``, at most ``limit`` at once."""
        siblings = Scope(lane.scope)
        lanes = [lane.fork(siblings) for _ in range(count)]
        try:
            return run_concurrently(count, limit, lambda i: body(i, lanes[i]), siblings)
        finally:
            siblings.close()
            lane.follow(lanes)


class Parallel(Concurrent):
    type = "Parallel"

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        self.branches = [StateMachine(branch) for branch in spec["Branches"]]

    def run_lanes(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> list[Any]:
        effective = process_input(self.spec, raw_input, context)
        lane.emit("ParallelStateStarted")
        limit = lane.run.max_concurrency or len(self.branches)
        return self.fan_out(
            lane, len(self.branches), limit, lambda i, branch: self.branches[i].run(branch, effective)
        )


class Map(Concurrent):
    type = "Map"

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        self.processor = StateMachine(spec.get("ItemProcessor") or spec["Iterator"])
        self.item_selector = spec.get("ItemSelector", spec.get("Parameters"))

    def run_lanes(self, lane: Lane, raw_input: Any, context: dict[str, Any]) -> list[Any]:
        # A Map's Parameters is the older name of ItemSelector, so only InputPath applies here.
        effective = process_input(self.spec, raw_input, context)
        items_path = self.spec.get("ItemsPath", "$")
        items = get_path(items_path, effective, context)
        if not isinstance(items, list):
            raise StatesError(
                RUNTIME, f"ItemsPath '{items_path}' must select an array, not {to_json_text(items)}"
            )
        if "MaxConcurrencyPath" in self.spec:
            limit = select_integer(self.spec, "MaxConcurrencyPath", effective, context, minimum=0)
        else:
            limit = self.spec.get("MaxConcurrency", 0)
        limit = min(
            limit or INLINE_MAP_CONCURRENCY,
            INLINE_MAP_CONCURRENCY,
            lane.run.max_concurrency or INLINE_MAP_CONCURRENCY,
        )
        lane.emit("MapStateStarted", {"length": len(items)})
        return self.fan_out(
            lane,
            len(items),
            limit,
            lambda i, iteration: self._iterate(iteration, i, items[i], effective, context),
        )

    def _iterate(
        self, iteration: Lane, index: int, item: Any, effective: Any, context: dict[str, Any]
    ) -> Any:
        details = {"name": self.name, "index": index}
        iteration.emit("MapIterationStarted", details)
        try:
            if self.item_selector is None:
                item_input = item
            else:
                item_context = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                item_input = apply_template(self.item_selector, effective, item_context)
            output = self.processor.run(iteration, item_input)
        except StatesError:
            iteration.emit("MapIterationFailed", details)
            raise
        except Cancelled:
            iteration.emit("MapIterationAborted", details)
            raise
        iteration.emit("MapIterationSucceeded", details)
        return output


STATE_TYPES: dict[str, type[State]] = {
    cls.type: cls for cls in (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map)
}


class StateMachine:
    """States and where to start: the top level, a Parallel branch or a Map's ItemProcessor."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.start_at: str = spec["StartAt"]
        self.states = {
            name: STATE_TYPES[state["Type"]](name, state) for name, state in spec["States"].items()
        }

    def run(self, lane: Lane, data: Any) -> Any:
        name: str | None = self.start_at
        while name is not None:
            lane.check()
            data, name = self.states[name].run(lane, data)
        return data
