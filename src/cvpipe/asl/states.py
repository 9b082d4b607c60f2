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

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from .callbacks import Waiting
from .choice import matching_rule
from .distributed import (
    MAX_CONCURRENCY,
    ChildExecution,
    MapRun,
    batches,
    read_items,
    transform,
    write_results,
)
from .errors import (
    EXCEED_TOLERATED_FAILURE_THRESHOLD,
    HEARTBEAT_TIMEOUT,
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    StatesError,
)
from .execution import THREADS, Cancelled, Lane, Run, Scope, run_concurrently
from .expressions import evaluate_value
from .history import (
    History,
    Trace,
    resource_details,
    text_details,
    timestamp_text,
    to_json_text,
)
from .intrinsics import evaluate_intrinsic, is_intrinsic
from .paths import compact_json, get_path
from .payload import (
    apply_template,
    check_text_size,
    checked_json_text,
    copy_document,
    fill_parameters,
    place_result,
    process_input,
    process_output,
    select_input,
)
from .retry import error_output, find_catcher, with_retries
from .tasks import TaskRequest
from .variables import Context, Variables

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


MAX_SECONDS = 99_999_999
"""AWS's bound for seconds a Wait, task timeout or heartbeat may name."""


def select_integer(
    spec: dict[str, Any],
    field_name: str,
    data: Any,
    context: dict[str, Any],
    minimum: int,
    maximum: int | None = None,
) -> int:
    """The integer that a ``...Path`` field (SecondsPath, TimeoutSecondsPath, ...) selects from ``data``."""
    value = get_path(spec[field_name], data, context)
    too_big = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_big:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise StatesError(
            RUNTIME,
            f"{field_name} {spec[field_name]!r} must select an integer {bounds}, not {to_json_text(value)}",
        )
    return value


class StateRuntimeError(StatesError):
    """An error of the state's own evaluation (States.Runtime, States.QueryEvaluationError) with the
    failing state named in the cause, as Step Functions words it."""

    def __init__(self, error: str, state: str, event_id: int, cause: str) -> None:
        super().__init__(
            error,
            f"An error occurred while executing the state '{state}' (entered at the event id #{event_id}). {cause}",
        )


JSONATA = "JSONata"
JSONPATH = "JSONPath"
_NO_RESULT = object()


class State:
    type: ClassVar[str]
    abortable: ClassVar[bool] = False
    """Whether the type has a ``<Type>StateAborted`` event (its work can be interrupted)."""

    def __init__(self, name: str, spec: dict[str, Any], language: str = JSONPATH) -> None:
        self.name = name
        self.spec = spec
        self.next: str | None = spec.get("Next")
        self.language = spec.get("QueryLanguage", language)
        """The machine's QueryLanguage unless the state names its own."""
        self.jsonata = self.language == JSONATA

    def run(self, lane: Lane, raw_input: Any) -> tuple[Any, str | None]:
        """Enter the state with ``raw_input``; its output and the next state's name (None: the end)."""
        lane.enter(self.name)
        entered = lane.emit(f"{self.type}StateEntered", lane.input_details(raw_input, self.name))
        try:
            output, next_name = self.execute(lane, raw_input, entered.timestamp)
            output_text = lane.json_text(output)  # the input's, when the state passes its input on
            check_text_size(output_text)
        except Cancelled:
            if self.abortable:
                lane.emit(f"{self.type}StateAborted")
            raise
        except StatesError as failure:
            if failure.error in (RUNTIME, QUERY_EVALUATION_ERROR) and not isinstance(
                failure, StateRuntimeError
            ):
                raise StateRuntimeError(failure.error, self.name, entered.id, failure.cause) from failure
            raise
        lane.emit(f"{self.type}StateExited", lane.output_details(output, output_text, self.name))
        return output, next_name

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        raise NotImplementedError

    # -- JSONata ----------------------------------------------------------------------------------

    def evaluate(self, value: Any, field: str, states: dict[str, Any], context: Context) -> Any:
        """A JSONata state's field value, its ``{% %}`` expressions evaluated."""
        return evaluate_value(value, field, states, context.variables.visible())

    def conclude(
        self,
        lane: Lane,
        raw_input: Any,
        context: Context,
        result: Any = _NO_RESULT,
        spec: dict[str, Any] | None = None,
    ) -> Any:
        """A JSONata state's end: Assign and Output (of ``spec``: the state, a Choice rule or a Catcher)
        both see ``$states.input`` and ``$states.result`` and the variables as they were before."""
        spec = self.spec if spec is None else spec
        states: dict[str, Any] = {"input": raw_input, "context": dict(context)}
        if result is not _NO_RESULT:
            states["errorOutput" if spec.get("ErrorEquals") else "result"] = result
        assigned = self.evaluate(spec["Assign"], "Assign", states, context) if "Assign" in spec else None
        if "Output" in spec:
            output = self.evaluate(spec["Output"], "Output", states, context)
        else:
            output = raw_input if result is _NO_RESULT else result
        if assigned is not None:
            lane.assign(assigned)
        return output

    def number(
        self, field: str, states: dict[str, Any], context: Context, minimum: int, maximum: int = MAX_SECONDS
    ) -> int | None:
        """A JSONata state's integer field (TimeoutSeconds, Seconds, ...): a literal or an expression."""
        value = self.bounded(field, states, context, minimum, maximum, whole=True)
        return None if value is None else int(value)

    def bounded(
        self, field: str, states: dict[str, Any], context: Context, minimum: int, maximum: int, *, whole: bool
    ) -> float | None:
        """A JSONata state's numeric field in [minimum, maximum], an integer if ``whole``."""
        if field not in self.spec:
            return None
        value = self.evaluate(self.spec[field], field, states, context)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        kinds = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not minimum <= value <= maximum:
            kind = "an integer" if whole else "a number"
            raise StatesError(
                QUERY_EVALUATION_ERROR,
                f"The field '{field}' must be {kind} from {minimum} to {maximum}, not {to_json_text(value)}",
            )
        return float(value)

    # -- JSONPath ---------------------------------------------------------------------------------

    def assign_from(self, lane: Lane, spec: dict[str, Any], data: Any, context: Context) -> dict[str, Any]:
        """A JSONPath Assign's values: its ``name.$`` paths read ``data`` (the state's result, its
        effective input, or a Catcher's error output)."""
        return apply_template(spec["Assign"], data, context) if "Assign" in spec else {}


class Pass(State):
    type = "Pass"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        if self.jsonata:
            return self.conclude(lane, raw_input, context), self.next
        effective = process_input(self.spec, raw_input, context)
        result = self.spec.get("Result", effective)
        assigned = self.assign_from(lane, self.spec, result, context)
        output = process_output(self.spec, raw_input, result, context)
        lane.assign(assigned)
        return output, self.next


class Choice(State):
    type = "Choice"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        if self.jsonata:
            rule = self._first_true(raw_input, context)
            target = self._target(rule)
            return self.conclude(lane, raw_input, context, spec=rule if rule else None), target
        effective = process_input(self.spec, raw_input, context)
        rule = matching_rule(self.spec, effective, context)
        target = self._target(rule)
        assigned = self.assign_from(
            lane, rule if rule and "Assign" in rule else self.spec, effective, context
        )
        output = process_output(self.spec, raw_input, effective, context)
        lane.assign(assigned)
        return output, target

    def _target(self, rule: dict[str, Any] | None) -> str:
        if rule is not None:
            return str(rule["Next"])
        if "Default" in self.spec:
            return str(self.spec["Default"])
        raise StatesError(NO_CHOICE_MATCHED, "No Choice rule matched the input and the state has no Default.")

    def _first_true(self, raw_input: Any, context: Context) -> dict[str, Any] | None:
        states = {"input": raw_input, "context": dict(context)}
        for index, rule in enumerate(self.spec["Choices"]):
            value = self.evaluate(rule["Condition"], f"Choices[{index}].Condition", states, context)
            if not isinstance(value, bool):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"The Condition of Choices[{index}] must evaluate to a boolean, not {to_json_text(value)}",
                )
            if value:
                return dict(rule)
        return None


class Succeed(State):
    type = "Succeed"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        if self.jsonata:
            return self.conclude(lane, raw_input, context), None
        return process_output(
            self.spec, raw_input, process_input(self.spec, raw_input, context), context
        ), None


class Fail(State):
    type = "Fail"

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        context = lane.context(self.name, entered)
        raise StatesError(self._text("Error", raw_input, context), self._text("Cause", raw_input, context))

    def _text(self, field_name: str, raw_input: Any, context: Context) -> str:
        """Error or Cause: the literal, what ErrorPath/CausePath (a path or an intrinsic) yields, or
        (JSONata) what its expression yields."""
        if field_name in self.spec and self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            value = self.evaluate(self.spec[field_name], field_name, states, context)
            if not isinstance(value, str):
                raise StatesError(
                    QUERY_EVALUATION_ERROR,
                    f"{field_name} must evaluate to a string, not {to_json_text(value)}",
                )
            return value
        if field_name in self.spec:
            return str(self.spec[field_name])
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
        now = lane.run.clock.now()
        if self.jsonata:
            lane.sleep(self._jsonata_seconds(raw_input, context, now))
            return self.conclude(lane, raw_input, context), self.next
        effective = process_input(self.spec, raw_input, context)
        lane.sleep(self._seconds(effective, context, now))
        assigned = self.assign_from(lane, self.spec, effective, context)
        output = process_output(self.spec, raw_input, effective, context)
        lane.assign(assigned)
        return output, self.next

    def _jsonata_seconds(self, raw_input: Any, context: Context, now: datetime) -> float:
        states = {"input": raw_input, "context": dict(context)}
        seconds = self.number("Seconds", states, context, minimum=0)
        if seconds is not None:
            return seconds
        moment = parse_timestamp(self.evaluate(self.spec["Timestamp"], "Timestamp", states, context))
        if moment is None:
            raise StatesError(QUERY_EVALUATION_ERROR, "Timestamp must evaluate to an RFC 3339 timestamp")
        return max((moment - now).total_seconds(), 0.0)

    def _seconds(self, effective: Any, context: dict[str, Any], now: datetime) -> float:
        spec = self.spec
        if "Seconds" in spec:
            return float(spec["Seconds"])
        if "SecondsPath" in spec:
            return select_integer(spec, "SecondsPath", effective, context, minimum=0, maximum=MAX_SECONDS)
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
    """A state with Retry and Catch (Task, Parallel, Map): ``attempt`` is what a Retrier repeats.

    ``attempt`` returns the state's output; it stores the state's Assign only once it has succeeded.
    """

    abortable = True
    journaled: ClassVar[bool] = False
    """Whether the state's outcomes go to the run's TaskJournal (Task states: see ``redrive``)."""

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        def attempt(retry_count: int) -> Any:
            return self.attempt(lane, raw_input, lane.context(self.name, entered, retry_count))

        try:
            return with_retries(self.spec.get("Retry", []), attempt, lane.sleep), self.next
        except StatesError as failure:
            return self.recover(lane, raw_input, entered, failure)

    def recover(
        self, lane: Lane, raw_input: Any, entered: datetime, failure: StatesError
    ) -> tuple[Any, str | None]:
        """The output and next state of the first Catcher that matches ``failure``; else it is raised."""
        catcher = find_catcher(self.spec.get("Catch", []), failure)
        if catcher is None:
            raise failure
        context = lane.context(self.name, entered)
        output, next_name = self.catch(lane, raw_input, context, failure, catcher)
        if self.journaled and lane.run.journal is not None:
            outcome = {"error": failure.error, "cause": failure.cause}
            lane.run.journal.record(lane.place, raw_input, outcome)
        return output, next_name

    def catch(
        self, lane: Lane, raw_input: Any, context: Context, failure: StatesError, catcher: dict[str, Any]
    ) -> tuple[Any, str]:
        if self.jsonata:
            return self.conclude(lane, raw_input, context, error_output(failure), catcher), catcher["Next"]
        assigned = self.assign_from(lane, catcher, error_output(failure), context)
        # A Catcher's ResultPath places the error output into the raw input; no OutputPath applies.
        placement = {"ResultPath": catcher.get("ResultPath", "$")}
        output = process_output(placement, raw_input, error_output(failure), context)
        lane.assign(assigned)
        return output, catcher["Next"]

    def attempt(self, lane: Lane, raw_input: Any, context: Context) -> Any:
        raise NotImplementedError

    def finish(self, lane: Lane, raw_input: Any, result: Any, context: Context) -> Any:
        """The output from the state's result: Assign and Output (JSONata), or ResultSelector, Assign,
        ResultPath and OutputPath (JSONPath)."""
        return self.place(lane, raw_input, self.select(result, context), context)

    def select(self, result: Any, context: Context) -> Any:
        """What the state keeps of its result: what ResultSelector makes of it (JSONPath)."""
        if not self.jsonata and "ResultSelector" in self.spec:
            return apply_template(self.spec["ResultSelector"], result, context)
        return result

    def place(self, lane: Lane, raw_input: Any, selected: Any, context: Context) -> Any:
        """The output from the kept result: Assign and Output (JSONata), or Assign, ResultPath and
        OutputPath (JSONPath)."""
        if self.jsonata:
            return self.conclude(lane, raw_input, context, selected)
        assigned = self.assign_from(lane, self.spec, selected, context)
        output = place_result(self.spec, raw_input, selected, context)
        lane.assign(assigned)
        return output


WAIT_FOR_TASK_TOKEN = ".waitForTaskToken"
"""The integration pattern of a Resource that waits for SendTaskSuccess/SendTaskFailure."""


class Task(Recoverable):
    type = "Task"
    journaled = True

    def execute(self, lane: Lane, raw_input: Any, entered: datetime) -> tuple[Any, str | None]:
        journal = lane.run.journal
        recorded = journal.recall(lane.place, raw_input) if journal is not None else None
        if recorded is None:
            return super().execute(lane, raw_input, entered)
        # Redriven: the outcome this entry had in an earlier attempt, without calling the resource.
        lane.emit("TaskReplayed", {"resource": self.spec["Resource"]})
        if "result" in recorded:
            return self.place(
                lane, raw_input, recorded["result"], lane.context(self.name, entered)
            ), self.next
        return self.recover(lane, raw_input, entered, StatesError(recorded["error"], recorded["cause"]))

    def attempt(self, lane: Lane, raw_input: Any, context: Context) -> Any:
        wake = threading.Event()
        waiting = lane.run.tokens.open(wake) if self.spec["Resource"].endswith(WAIT_FOR_TASK_TOKEN) else None
        try:
            if waiting is not None:
                context = context.with_fields(Task={"Token": waiting.token})
            if self.jsonata:
                states = {"input": raw_input, "context": dict(context)}
                timeout = self.number("TimeoutSeconds", states, context, minimum=1)
                heartbeat = self.number("HeartbeatSeconds", states, context, minimum=1)
                parameters = self.evaluate(
                    self.spec.get("Arguments", raw_input), "Arguments", states, context
                )
            else:
                selected = select_input(self.spec, raw_input, context)
                timeout = self._seconds("TimeoutSeconds", selected, context)
                heartbeat = self._seconds("HeartbeatSeconds", selected, context)
                parameters = fill_parameters(self.spec, selected, context)
            try:
                result = self._invoke(lane, parameters, context, timeout, heartbeat, wake, waiting)
            except Cancelled as stopped:
                if stopped.finished and lane.run.journal is not None:
                    # Done before the stop took effect: a redrive takes this result.
                    with contextlib.suppress(StatesError):
                        selected = self.select(stopped.finished[0], context)
                        lane.run.journal.record(lane.place, raw_input, {"result": selected})
                raise
        finally:
            if waiting is not None:
                lane.run.tokens.close(waiting)
        selected = self.select(result, context)
        output = self.place(lane, raw_input, selected, context)
        if lane.run.journal is not None:
            lane.run.journal.record(lane.place, raw_input, {"result": selected})
        return output

    def _seconds(self, field_name: str, selected: Any, context: dict[str, Any]) -> int | None:
        """TimeoutSeconds or HeartbeatSeconds: the literal, or what its ``...Path`` selects from the input
        that InputPath kept (as AWS resolves them, before Parameters)."""
        if f"{field_name}Path" in self.spec:
            return select_integer(
                self.spec, f"{field_name}Path", selected, context, minimum=1, maximum=MAX_SECONDS
            )
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
        parameters_text = checked_json_text(parameters)
        scheduled: dict[str, Any] = {
            **described,
            "region": lane.run.region,
            "parameters": parameters_text,
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
            json.loads(parameters_text),  # the handler's own copy
            copy_document(dict(context)),
            timeout,
            emit=emit,
            tokens=lane.run.tokens,
        )
        lane.emit("TaskStarted", described)

        outcome: dict[str, Any] = {}
        clock = lane.run.clock
        ended = threading.Event()

        def call() -> None:
            before = clock.thread_slept()
            try:
                outcome["result"] = handler(request)
            except BaseException as exc:  # reported as the task's failure below
                outcome["exception"] = exc
            outcome["slept"] = clock.thread_slept() - before
            ended.set()
            wake.set()

        def on_cancel() -> None:
            request.cancelled.set()
            wake.set()

        detach = lane.scope.on_cancel(on_cancel)
        if lane.scope.cancelled:  # aborted meanwhile: a request never sent has no effect to undo
            detach()
            raise Cancelled()
        started = time.monotonic()
        THREADS.start(call, f"task:{self.name}")
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
                    ended.wait(lane.run.grace())
                    if waiting is None and "result" in outcome:
                        with contextlib.suppress(StatesError):  # a result not JSON is no result
                            text = json_text(outcome["result"], f"the result of {resource}")
                            raise Cancelled(json.loads(text))
                    raise Cancelled()
                now = time.monotonic()
                if "exception" in outcome:
                    raise as_states_error(outcome["exception"])
                if "result" in outcome and timeout is not None and outcome["slept"] > timeout:
                    raise StatesError(TIMEOUT, f"the task did not finish within {timeout} seconds")
                if waiting is None and "result" in outcome:
                    result_text = json_text(outcome["result"], f"the result of {resource}")
                    break
                if waiting is not None and "result" in outcome and not submitted:
                    submitted = True
                    output = json_text(outcome["result"], f"the result of {resource}")
                    lane.emit("TaskSubmitted", {**described, **text_details("output", output)})
                if waiting is not None and waiting.outcome is not None and submitted:
                    kind, value, cause = waiting.outcome
                    if kind == "failure":
                        raise StatesError(value, cause)
                    result_text = json_text(value, "the task's output")
                    break
                if timeout is not None and now >= started + timeout:
                    raise StatesError(TIMEOUT, f"the task did not finish within {timeout} seconds")
                if waiting is not None and heartbeat is not None and now >= waiting.last_beat + heartbeat:
                    raise StatesError(
                        HEARTBEAT_TIMEOUT,
                        f"no heartbeat was received within {heartbeat} seconds",
                    )
            check_text_size(result_text)
        except StatesError as failure:
            request.cancelled.set()
            kind = "TaskTimedOut" if failure.error in (TIMEOUT, HEARTBEAT_TIMEOUT) else "TaskFailed"
            lane.emit(kind, {**described, "error": failure.error, "cause": failure.cause})
            raise
        finally:
            detach()
        lane.emit("TaskSucceeded", {**described, **text_details("output", result_text)})
        return json.loads(result_text)  # detached from whatever the handler keeps


def as_states_error(exc: BaseException) -> StatesError:
    """A handler's exception as the task's error: its own StatesError, else States.TaskFailed."""
    if isinstance(exc, StatesError):
        return exc
    message = str(exc)
    return StatesError(TASK_FAILED, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def json_text(value: Any, what: str) -> str:
    """``value``'s compact JSON text; States.Runtime if it is not JSON."""
    try:
        return compact_json(value)
    except (TypeError, ValueError) as exc:
        raise StatesError(RUNTIME, f"{what} is not JSON: {exc}") from exc


class Concurrent(Recoverable):
    """Parallel and Map: their work runs on lanes of its own, at once; the first failure stops the rest."""

    def attempt(self, lane: Lane, raw_input: Any, context: Context) -> Any:
        try:
            outputs = self.run_lanes(lane, raw_input, context)
        except StatesError:
            lane.emit(f"{self.type}StateFailed")
            raise
        lane.emit(f"{self.type}StateSucceeded")
        return self.finish(lane, raw_input, outputs, context)

    def run_lanes(self, lane: Lane, raw_input: Any, context: Context) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def fan_out(
        lane: Lane, context: Context, count: int, limit: int, body: Callable[[int, Lane], Any]
    ) -> list[Any]:
        """``body(i, lane_i)`` for ``i < count`` on lanes forked from ``lane``, at most ``limit`` at once."""
        siblings = Scope(lane.scope)
        attempt = context["State"]["RetryCount"]
        lanes = [lane.fork(siblings, f".{attempt}[{i}]") for i in range(count)]
        try:
            return run_concurrently(count, limit, lambda i: body(i, lanes[i]), siblings)
        finally:
            siblings.close()
            lane.follow(lanes)


class Parallel(Concurrent):
    type = "Parallel"

    def __init__(self, name: str, spec: dict[str, Any], language: str = JSONPATH) -> None:
        super().__init__(name, spec, language)
        self.branches = [StateMachine(branch, language) for branch in spec["Branches"]]

    def run_lanes(self, lane: Lane, raw_input: Any, context: Context) -> list[Any]:
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            effective = self.evaluate(self.spec.get("Arguments", raw_input), "Arguments", states, context)
        else:
            effective = process_input(self.spec, raw_input, context)
        lane.emit("ParallelStateStarted")
        limit = lane.run.max_concurrency or len(self.branches)
        return self.fan_out(
            lane,
            context,
            len(self.branches),
            limit,
            lambda i, branch: self.branches[i].run(branch, effective),
        )


class Map(Concurrent):
    type = "Map"

    def __init__(self, name: str, spec: dict[str, Any], language: str = JSONPATH) -> None:
        super().__init__(name, spec, language)
        self.processor = StateMachine(spec.get("ItemProcessor") or spec["Iterator"], language)
        self.item_selector = spec.get("ItemSelector", spec.get("Parameters"))

    def run_lanes(self, lane: Lane, raw_input: Any, context: Context) -> list[Any]:
        items, effective, limit = self.items(raw_input, context)
        limit = min(
            limit or INLINE_MAP_CONCURRENCY,
            INLINE_MAP_CONCURRENCY,
            lane.run.max_concurrency or INLINE_MAP_CONCURRENCY,
        )
        lane.emit("MapStateStarted", {"length": len(items)})
        return self.fan_out(
            lane,
            context,
            len(items),
            limit,
            lambda i, iteration: self._iterate(iteration, i, items[i], effective, context),
        )

    def items(self, raw_input: Any, context: Context) -> tuple[list[Any], Any, int]:
        """The items, the input their ItemSelector reads, and MaxConcurrency (0: no limit)."""
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            items = self.evaluate(self.spec.get("Items", raw_input), "Items", states, context)
            if not isinstance(items, list):
                raise StatesError(
                    QUERY_EVALUATION_ERROR, f"Items must evaluate to an array, not {to_json_text(items)}"
                )
            return items, raw_input, self.number("MaxConcurrency", states, context, minimum=0) or 0
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
        return items, effective, limit

    def item_input(self, index: int, item: Any, effective: Any, context: Context) -> Any:
        """What an iteration starts from: the item, or what ItemSelector makes of it."""
        if self.item_selector is None:
            return item
        item_context = context.with_fields(Map={"Item": {"Index": index, "Value": item}})
        if self.jsonata:
            states = {"input": effective, "context": dict(item_context)}
            return self.evaluate(self.item_selector, "ItemSelector", states, item_context)
        return apply_template(self.item_selector, effective, item_context)

    def _iterate(self, iteration: Lane, index: int, item: Any, effective: Any, context: Context) -> Any:
        details = {"name": self.name, "index": index}
        iteration.emit("MapIterationStarted", details)
        try:
            output = self.processor.run(iteration, self.item_input(index, item, effective, context))
        except StatesError:
            iteration.emit("MapIterationFailed", details)
            raise
        except Cancelled:
            iteration.emit("MapIterationAborted", details)
            raise
        iteration.emit("MapIterationSucceeded", details)
        return output


LOCAL_CHILD_THREADS = 64
"""Threads a Distributed Map runs its child executions on locally, whatever MaxConcurrency allows."""


class DistributedMap(Map):
    """A Map whose ItemProcessor runs in DISTRIBUTED mode: items from an ItemReader (or the input),
    optionally batched, each run as a child execution with its own history; tolerated failures;
    results returned or written by a ResultWriter."""

    def run_lanes(self, lane: Lane, raw_input: Any, context: Context) -> Any:
        items, effective = self._read(lane, raw_input, context)
        limit = self._integer("MaxConcurrency", raw_input, effective, context) or MAX_CONCURRENCY
        inputs = [self.item_input(i, item, effective, context) for i, item in enumerate(items)]
        if "ItemBatcher" in self.spec:
            inputs = batches(inputs, self._batcher(raw_input, effective, context))
        tolerated_count = self._integer("ToleratedFailureCount", raw_input, effective, context)
        tolerated_percent = self._number("ToleratedFailurePercentage", raw_input, effective, context)
        machine = lane.run.context["StateMachine"]
        label = self.spec.get("Label", self.name)
        map_run = MapRun(
            machine["Id"].replace(":stateMachine:", ":mapRun:") + f"/{label}:{uuid.uuid4()}", label
        )
        lane.run.map_runs.append(map_run)
        lane.emit("MapRunStarted", {"mapRunArn": map_run.arn})
        children = [self._child(lane, map_run, label, index, value) for index, value in enumerate(inputs)]
        map_run.executions = [child for child, _ in children]
        # Thresholds count items: every item of a failed batch has failed.
        weights = [len(value["Items"]) if "ItemBatcher" in self.spec else 1 for value in inputs]
        failed: list[int] = []
        lock = threading.Lock()

        def body(index: int) -> Any:
            child, child_lane = children[index]
            try:
                return self._run_child(child, child_lane)
            except StatesError as failure:
                with lock:
                    failed.append(index)
                    count = sum(weights[i] for i in failed)
                over_count = tolerated_count is not None and count > tolerated_count
                over_percent = (
                    tolerated_percent is not None and count * 100 / sum(weights) > tolerated_percent
                )
                if over_count or over_percent or (tolerated_count is None and tolerated_percent is None):
                    raise StatesError(
                        EXCEED_TOLERATED_FAILURE_THRESHOLD,
                        "The specified tolerated failure threshold was exceeded",
                    ) from failure
                return None

        threads = min(limit, LOCAL_CHILD_THREADS, lane.run.max_concurrency or LOCAL_CHILD_THREADS)
        siblings = Scope(lane.scope)
        for _, child_lane in children:
            child_lane.run.root = Scope(siblings)
            child_lane.scope = child_lane.run.root
        child_machine = f"{machine['Id']}/{label}"
        writer = self.spec.get("ResultWriter")

        def results() -> Any:
            if writer is None:
                return transform(map_run.executions, "COMPACT", child_machine)
            arguments = self._arguments(writer, "ResultWriter", raw_input, effective, context)
            return write_results(lane.run.objects, writer, arguments, map_run, child_machine)

        try:
            run_concurrently(len(children), max(threads, 1), body, siblings)
        except StatesError as failure:
            map_run.status = "FAILED"
            lane.emit("MapRunFailed", {"error": failure.error, "cause": failure.cause})
            if writer is not None and "Resource" in writer:
                # A failed Map Run still exports what succeeded, failed, or never started (PENDING);
                # the Map fails with the run's error even if that export fails too.
                with contextlib.suppress(StatesError):
                    results()
            raise
        finally:
            siblings.close()
        map_run.status = "SUCCEEDED"
        lane.emit("MapRunSucceeded")
        return results()

    def _read(self, lane: Lane, raw_input: Any, context: Context) -> tuple[list[Any], Any]:
        """The items (from the ItemReader, else as an inline Map finds them) and the input ItemSelector reads."""
        if "ItemReader" not in self.spec:
            items, effective, _ = self.items(raw_input, context)
            return items, effective
        effective = raw_input if self.jsonata else select_input(self.spec, raw_input, context)
        reader = dict(self.spec["ItemReader"])
        config = dict(reader.get("ReaderConfig", {}))
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            config = self.evaluate(config, "ItemReader.ReaderConfig", states, context)
        elif "MaxItemsPath" in config:
            config["MaxItems"] = select_integer(config, "MaxItemsPath", effective, context, minimum=0)
        reader["ReaderConfig"] = config
        arguments = self._arguments(reader, "ItemReader", raw_input, effective, context)
        return read_items(lane.run.objects, reader, arguments), effective

    def _arguments(
        self, spec: dict[str, Any], field: str, raw_input: Any, effective: Any, context: Context
    ) -> Any:
        """An ItemReader's or ResultWriter's Parameters (JSONPath) or Arguments (JSONata), resolved."""
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            return self.evaluate(spec.get("Arguments", {}), f"{field}.Arguments", states, context)
        return apply_template(spec.get("Parameters", {}), effective, context)

    def _batcher(self, raw_input: Any, effective: Any, context: Context) -> dict[str, Any]:
        batcher = dict(self.spec["ItemBatcher"])
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            return dict(self.evaluate(batcher, "ItemBatcher", states, context))
        for name in ("MaxItemsPerBatch", "MaxInputBytesPerBatch"):
            if f"{name}Path" in batcher:
                batcher[name] = select_integer(batcher, f"{name}Path", effective, context, minimum=1)
        if "BatchInput" in batcher:
            batcher["BatchInput"] = apply_template(batcher["BatchInput"], effective, context)
        return batcher

    def _number(self, field: str, raw_input: Any, effective: Any, context: Context) -> float | None:
        if self.jsonata:
            states = {"input": raw_input, "context": dict(context)}
            percent = field == "ToleratedFailurePercentage"
            limit = 100 if percent else MAX_SECONDS
            return self.bounded(field, states, context, 0, limit, whole=not percent)
        if f"{field}Path" in self.spec:
            value = get_path(self.spec[f"{field}Path"], effective, context)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise StatesError(
                    RUNTIME, f"{field}Path must select a number >= 0, not {to_json_text(value)}"
                )
            return float(value)
        value = self.spec.get(field)
        return None if value is None else float(value)

    def _integer(self, field: str, raw_input: Any, effective: Any, context: Context) -> int | None:
        value = self._number(field, raw_input, effective, context)
        return None if value is None else int(value)

    def _child(
        self, lane: Lane, map_run: MapRun, label: str, index: int, value: Any
    ) -> tuple[ChildExecution, Lane]:
        """A child execution: its own context object, history and (empty) variables. Its tasks are
        journaled at a place of their own (the Map's entry and the item's index), so that a redriven
        execution runs again only the children's tasks that had not succeeded, as redriving a Map
        Run does."""
        name = str(uuid.uuid4())
        parent = lane.run.context
        machine_arn = parent["StateMachine"]["Id"]
        arn = machine_arn.replace(":stateMachine:", ":execution:") + f"/{label}:{name}"
        started = lane.run.clock.now()
        context = {
            "Execution": {
                **parent["Execution"],
                "Id": arn,
                "Name": name,
                "Input": value,
                "StartTime": timestamp_text(started),
            },
            "StateMachine": {
                "Id": f"{machine_arn}/{label}",
                "Name": f"{parent['StateMachine']['Name']}/{label}",
            },
        }
        listener = lane.run.on_child_event
        run = Run(
            tasks=lane.run.tasks,
            clock=lane.run.clock,
            history=History(
                lane.run.clock.now,
                on_event=(lambda event: listener(arn, event)) if listener else None,
                limit=lane.run.history.limit,
            ),
            context=context,
            region=lane.run.region,
            max_concurrency=lane.run.max_concurrency,
            deadline=lane.run.deadline,
            tokens=lane.run.tokens,
            objects=lane.run.objects,
            map_runs=lane.run.map_runs,
            journal=lane.run.journal,
            on_child_event=listener,
            parent=lane.run,
        )
        child = ChildExecution(name, arn, value, start_date=timestamp_text(started))
        return child, Lane(run, run.root, Trace(run.history), Variables(), f"{lane.place}[{index}]")

    def _run_child(self, child: ChildExecution, lane: Lane) -> Any:
        history = lane.run.history
        child.status = "RUNNING"
        text = child.input_text = to_json_text(child.input)
        history.append("ExecutionStarted", text_details("input", text), 0)
        try:
            check_text_size(text)
            lane.recorded(child.input, text)
            output = self.processor.run(lane, child.input)
        except StatesError as failure:
            child.status, child.error, child.cause = "FAILED", failure.error, failure.cause
            lane.emit("ExecutionFailed", {"error": failure.error, "cause": failure.cause}, final=True)
            raise
        except Cancelled:
            child.status = "ABORTED"
            lane.emit("ExecutionAborted", final=True)
            raise
        finally:
            child.stop_date = timestamp_text(lane.run.clock.now())
            child.history = history.events
        child.status, child.output, child.output_text = "SUCCEEDED", output, lane.json_text(output)
        lane.emit("ExecutionSucceeded", text_details("output", child.output_text), final=True)
        child.history = history.events
        return output


STATE_TYPES: dict[str, type[State]] = {
    cls.type: cls for cls in (Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map)
}


def _build(name: str, spec: dict[str, Any], language: str) -> State:
    processor = spec.get("ItemProcessor")
    config = processor.get("ProcessorConfig", {}) if isinstance(processor, dict) else {}
    if spec["Type"] == "Map" and config.get("Mode") == "DISTRIBUTED":
        return DistributedMap(name, spec, language)
    return STATE_TYPES[spec["Type"]](name, spec, language)


class StateMachine:
    """States and where to start: the top level, a Parallel branch or a Map's ItemProcessor."""

    def __init__(self, spec: dict[str, Any], language: str | None = None) -> None:
        self.start_at: str = spec["StartAt"]
        # Nested machines take the top level's QueryLanguage as their default.
        language = language or spec.get("QueryLanguage", JSONPATH)
        self.states = {name: _build(name, state, language) for name, state in spec["States"].items()}

    def run(self, lane: Lane, data: Any) -> Any:
        name: str | None = self.start_at
        while name is not None:
            lane.check()
            data, name = self.states[name].run(lane, data)
        return data
