"""Conformance: the examples of the ASL specification (states-language.net/spec.html) and of AWS's
Step Functions developer guide, run through the engine. Each test names the section it comes from.

Handlers are small Python functions on a TaskRegistry; every run uses a VirtualClock, so waits and
retry back-off cost nothing and the sleeps can be asserted.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from json import dumps as json_dumps
from json import loads as json_loads
from typing import Any

import pytest

from cvpipe.asl import DefinitionError, Engine, StatesError, TaskRequest, VirtualClock
from cvpipe.asl.validate import validate

from .helpers import machine, registry, run, types

pytestmark = pytest.mark.unit


def pass_state(**fields: Any) -> dict[str, Any]:
    return {"Type": "Pass", "End": True, **fields}


def task(resource: str = "work", **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": resource, "End": True, **fields}


def processor(*states: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A Parallel branch or a Map's ItemProcessor from (name, state) pairs, starting at the first."""
    return {"StartAt": states[0][0], "States": dict(states)}


def echo(request: TaskRequest) -> Any:
    return request.parameters


def fails_with(error: str, cause: str = "") -> Any:
    def handler(request: TaskRequest) -> Any:
        raise StatesError(error, cause)

    return handler


# --- Input and output processing ----------------------------------------------------------------


def test_result_path_places_the_task_result_into_the_input() -> None:
    # AWS guide, "Specifying state output using ResultPath": "Use ResultPath to include the result with the input".
    raw = {
        "comment": "This is a test of the input and output of a Task state.",
        "details": "Default example",
        "who": "AWS Step Functions",
    }
    definition = machine({"Hello": task("hello", ResultPath="$.taskresult")})
    result = run(definition, raw, {"hello": lambda request: "Hello, AWS Step Functions!"})
    assert result.output == {**raw, "taskresult": "Hello, AWS Step Functions!"}


def test_result_path_into_a_nested_node_and_null_result_path() -> None:
    # AWS guide, ResultPath: "Update a node in the input with the result" and "Discard the result and keep
    # the original input".
    raw = {"comment": "c", "details": "d", "who": "AWS Step Functions", "strings": {"first": "a"}}
    nested = run(
        machine({"T": task("hello", ResultPath="$.strings.lambdaresult")}), raw, {"hello": lambda r: "Hi"}
    )
    assert nested.output == {**raw, "strings": {"first": "a", "lambdaresult": "Hi"}}
    discarded = run(machine({"T": task("hello", ResultPath=None)}), raw, {"hello": lambda r: "Hi"})
    assert discarded.output == raw


def test_pass_state_result_and_result_path() -> None:
    # Spec, "Pass State": the Result is placed at ResultPath in the input.
    state = pass_state(Result={"x-datum": 0.381018, "y-datum": 622.2269926397355}, ResultPath="$.coords")
    result = run(machine({"No-op": state}), {"georefOf": "Home"})
    assert result.output == {
        "georefOf": "Home",
        "coords": {"x-datum": 0.381018, "y-datum": 622.2269926397355},
    }


def test_spec_parameters_example_with_a_context_path() -> None:
    # Spec, "Parameters": static values, paths into the input (definite and indefinite) and into the context.
    parameters = {
        "flagged": True,
        "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[3:]"},
        "execution.$": "$$.Execution.Name",
    }
    result = run(
        machine({"P": pass_state(Parameters=parameters)}),
        {"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]},
        name="exec",
    )
    assert result.output == {
        "flagged": True,
        "parts": {"first": 0, "last3": [30, 40, 50]},
        "execution": "exec",
    }


def test_parameters_read_every_documented_context_field() -> None:
    # AWS guide, "Accessing execution data from the Context object": Execution, State and StateMachine nodes.
    parameters = {
        "id.$": "$$.Execution.Id",
        "input.$": "$$.Execution.Input",
        "start.$": "$$.Execution.StartTime",
        "redrives.$": "$$.Execution.RedriveCount",
        "state.$": "$$.State.Name",
        "entered.$": "$$.State.EnteredTime",
        "retries.$": "$$.State.RetryCount",
        "machine.$": "$$.StateMachine.Name",
    }
    clock = VirtualClock(datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC))
    result = run(
        machine({"Ctx": pass_state(Parameters=parameters)}),
        {"k": "v"},
        clock=clock,
        name="n",
        state_machine_name="SM",
    )
    assert result.output == {
        "id": "arn:aws:states:us-east-1:000000000000:execution:SM:n",
        "input": {"k": "v"},
        "start": "2024-03-01T12:00:00.250Z",
        "redrives": 0,
        "state": "Ctx",
        "entered": "2024-03-01T12:00:00.250Z",
        "retries": 0,
        "machine": "SM",
    }


def test_input_path_and_output_path_null() -> None:
    # AWS guide, InputPath/OutputPath: null gives the state an empty object, or sends one on; ResultPath
    # still places the result into the raw input.
    assert run(machine({"P": pass_state(InputPath=None, Parameters={"seen.$": "$"})}), {"big": 1}).output == {
        "seen": {}
    }
    assert run(machine({"P": pass_state(InputPath=None, ResultPath="$.r")}), {"big": 1}).output == {
        "big": 1,
        "r": {},
    }
    assert run(machine({"P": pass_state(OutputPath=None)}), {"big": 1}).output == {}


def test_full_processing_order_on_a_task() -> None:
    # AWS guide, "Processing input and output": InputPath -> Parameters -> ResultSelector -> ResultPath -> OutputPath.
    def cluster(request: TaskRequest) -> Any:
        return {
            "resourceType": "elasticmapreduce",
            "output": {"ClusterId": request.parameters["id"], "noise": 1},
            "tags": [1, 2, 3],
        }

    state = task(
        "emr",
        InputPath="$.job",
        Parameters={"id.$": "$.name"},
        ResultSelector={
            "ClusterId.$": "$.output.ClusterId",
            "Type.$": "$.resourceType",
            "Tags.$": "States.ArrayLength($.tags)",
        },
        ResultPath="$.job.cluster",
        OutputPath="$.job",
    )
    result = run(machine({"T": state}), {"job": {"name": "c-1"}, "other": True}, {"emr": cluster})
    assert result.output == {
        "name": "c-1",
        "cluster": {"ClusterId": "c-1", "Type": "elasticmapreduce", "Tags": 3},
    }


def test_result_path_into_a_non_object_input_is_a_result_path_match_failure() -> None:
    # Spec, "Errors": States.ResultPathMatchFailure; like other errors of a Task it can be caught.
    states = {
        "T": task(
            "r",
            ResultPath="$.x",
            Catch=[{"ErrorEquals": ["States.ResultPathMatchFailure"], "Next": "Caught"}],
        ),
        "Caught": {"Type": "Succeed"},
    }
    result = run(machine(states), 5, {"r": lambda request: 1})
    assert result.status == "SUCCEEDED" and result.output["Error"] == "States.ResultPathMatchFailure"
    failed = run(machine({"P": pass_state(Result=1, ResultPath="$.x")}), "text")
    assert (failed.status, failed.error) == ("FAILED", "States.ResultPathMatchFailure")


@pytest.mark.parametrize("data", [7, 2.5, "text", [1, "two"], True, {"a": None}])
def test_execution_input_need_not_be_an_object(data: Any) -> None:
    # AWS StartExecution: the input is any JSON text; it reaches the first state and $$.Execution.Input as is.
    result = run(
        machine({"P": pass_state(Parameters={"seen.$": "$", "input.$": "$$.Execution.Input"})}), data
    )
    assert result.output == {"seen": data, "input": data}


def test_missing_execution_input_is_an_empty_object() -> None:
    # AWS StartExecution: input defaults to {}.
    assert run(machine({"P": pass_state()})).output == {}


# --- Parallel -----------------------------------------------------------------------------------


def test_parallel_output_is_the_array_of_branch_outputs_placed_at_result_path() -> None:
    # Spec, "Parallel State": the output is an array with one element per branch, in branch order.
    def lookup(kind: str) -> Any:
        return lambda request: {kind: request.parameters["who"]}

    state = {
        "Type": "Parallel",
        "Branches": [
            processor(("LookupAddress", task("address", Parameters={"who.$": "$.name"}))),
            processor(("LookupPhone", task("phone", Parameters={"who.$": "$.name"}))),
        ],
        "ResultPath": "$.lookups",
        "End": True,
    }
    result = run(
        machine({"LookupCustomerInfo": state}),
        {"name": "Ann"},
        {"address": lookup("address"), "phone": lookup("phone")},
    )
    assert result.output == {"name": "Ann", "lookups": [{"address": "Ann"}, {"phone": "Ann"}]}


def test_succeed_in_a_branch_ends_only_that_branch() -> None:
    # Spec, "Succeed State": it terminates the branch it is in; the Parallel state goes on.
    state = {
        "Type": "Parallel",
        "Branches": [
            processor(("Done", {"Type": "Succeed", "OutputPath": "$.a"})),
            processor(("Work", pass_state(Result="worked"))),
        ],
        "Next": "After",
    }
    result = run(machine({"P": state, "After": pass_state(Parameters={"both.$": "$"})}), {"a": 1})
    assert result.output == {"both": [1, "worked"]}


def test_parallel_result_selector_with_an_intrinsic() -> None:
    # AWS guide, "ResultSelector" on Parallel states; intrinsics are allowed in ResultSelector.
    state = {
        "Type": "Parallel",
        "Branches": [processor(("A", pass_state(Result=[1, 2]))), processor(("B", pass_state(Result=[3])))],
        "ResultSelector": {
            "first.$": "$[0]",
            "total.$": "States.MathAdd(States.ArrayLength($[0]), States.ArrayLength($[1]))",
        },
        "End": True,
    }
    assert run(machine({"P": state})).output == {"first": [1, 2], "total": 3}


def test_a_failed_branch_fails_the_parallel_state_with_the_branch_error_and_catch_sees_it() -> None:
    # AWS guide, Parallel: "If any branch fails ... the entire Parallel state fails"; the error is the branch's own.
    state = {
        "Type": "Parallel",
        "Branches": [
            processor(("Ok", pass_state())),
            processor(("Boom", {"Type": "Fail", "Error": "Branch.Error", "Cause": "branch two"})),
        ],
        "Catch": [{"ErrorEquals": ["Branch.Error"], "ResultPath": "$.failure", "Next": "Handled"}],
        "End": True,
    }
    result = run(machine({"P": state, "Handled": pass_state()}), {"in": 1})
    assert result.output == {"in": 1, "failure": {"Error": "Branch.Error", "Cause": "branch two"}}
    assert "ParallelStateFailed" in types(result)
    uncaught = run(machine({"P": {**state, "Catch": []}}), {})
    assert (uncaught.status, uncaught.error, uncaught.cause) == ("FAILED", "Branch.Error", "branch two")


def test_retry_on_a_parallel_state_reruns_every_branch() -> None:
    # Spec, "Retrying after error": Parallel states may retry; a retry runs the whole state again.
    calls: list[str] = []

    def flaky(request: TaskRequest) -> Any:
        calls.append(request.parameters)
        if len(calls) == 1:
            raise StatesError("Flaky", "first call")
        return request.parameters

    state = {
        "Type": "Parallel",
        "Branches": [
            processor(("T", task("flaky", Parameters="a"))),
            processor(("U", pass_state(Result="b"))),
        ],
        "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2}],
        "End": True,
    }
    clock = VirtualClock()
    result = run(machine({"P": state}), {}, {"flaky": flaky}, clock=clock)
    assert result.output == ["a", "b"] and calls == ["a", "a"] and clock.slept == [2]
    assert types(result).count("ParallelStateStarted") == 2


# --- Map ----------------------------------------------------------------------------------------


def test_items_path_selects_the_array() -> None:
    # AWS guide, "ItemsPath": the ThingsPiratesSay example.
    data = {"ThingsPiratesSay": [{"say": "Avast!"}, {"say": "Yar!"}], "ThingsGiantsSay": [{"say": "Fee!"}]}
    state = {
        "Type": "Map",
        "ItemsPath": "$.ThingsPiratesSay",
        "ItemProcessor": processor(("SayWord", pass_state())),
        "End": True,
    }
    assert run(machine({"PiratesSay": state}), data).output == [{"say": "Avast!"}, {"say": "Yar!"}]


def test_item_selector_example() -> None:
    # AWS guide, "ItemSelector (Map)": a static value and $$.Map.Item.Value for every iteration.
    items = [{"resize": "true", "format": "jpg"}, {"resize": "false", "format": "png"}]
    state = {
        "Type": "Map",
        "ItemsPath": "$.imageData",
        "ItemSelector": {"size": 10, "value.$": "$$.Map.Item.Value"},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **processor(("Resize", pass_state()))},
        "End": True,
    }
    result = run(machine({"M": state}), {"imageData": items})
    assert result.output == [{"size": 10, "value": items[0]}, {"size": 10, "value": items[1]}]


def test_legacy_parameters_and_iterator_with_the_context_object() -> None:
    # AWS guide, "Context object data for Map states": Parameters of the Map state read Map.Item.Index/Value.
    state = {
        "Type": "Map",
        "Parameters": {"ContextIndex.$": "$$.Map.Item.Index", "ContextValue.$": "$$.Map.Item.Value"},
        "Iterator": processor(("TestPass", pass_state())),
        "End": True,
    }
    result = run(machine({"ExampleMapState": state}), [{"who": "bob"}, {"who": "meg"}, {"who": "joe"}])
    assert result.output == [
        {"ContextIndex": 0, "ContextValue": {"who": "bob"}},
        {"ContextIndex": 1, "ContextValue": {"who": "meg"}},
        {"ContextIndex": 2, "ContextValue": {"who": "joe"}},
    ]


def test_map_item_is_not_in_the_context_of_the_iteration_states() -> None:
    # AWS guide, same section: "You must define parameters from the context object in the Parameters block
    # of the main Map state, not within the states included in the Iterator section."
    state = {
        "Type": "Map",
        "ItemProcessor": processor(("Inner", pass_state(Parameters={"i.$": "$$.Map.Item.Index"}))),
        "End": True,
    }
    result = run(machine({"M": state}), [1])
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "MapIterationFailed" in types(result)


def test_map_item_selector_reads_the_effective_input_after_input_path() -> None:
    # AWS guide, ItemsPath: "the Map state applies ItemsPath after InputPath"; ItemSelector's $ is that input too.
    state = {
        "Type": "Map",
        "InputPath": "$.job",
        "ItemsPath": "$.folds",
        "ItemSelector": {"fold.$": "$$.Map.Item.Value", "k.$": "$.k", "at.$": "$$.Map.Item.Index"},
        "ItemProcessor": processor(("Train", pass_state())),
        "ResultSelector": {"n.$": "States.ArrayLength($)", "last.$": "$[-1:]"},
        "ResultPath": "$.job.trained",
        "End": True,
    }
    result = run(machine({"M": state}), {"job": {"folds": [3, 4], "k": 2}})
    assert result.output == {
        "job": {"folds": [3, 4], "k": 2, "trained": {"n": 2, "last": [{"fold": 4, "k": 2, "at": 1}]}}
    }


@pytest.mark.parametrize("items", [{"a": 1}, "abc", 5, None])
def test_items_path_must_select_an_array(items: Any) -> None:
    # AWS guide, ItemsPath: "the value of ItemsPath must be a Reference Path ... that path must point to JSON array".
    state = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemProcessor": processor(("P", pass_state())),
        "End": True,
    }
    result = run(machine({"M": state}), {"items": items})
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "ItemsPath '$.items' must select an array" in result.cause
    assert types(result) == ["ExecutionStarted", "MapStateEntered", "MapStateFailed", "ExecutionFailed"]


def test_max_concurrency_one_runs_the_iterations_one_after_the_other_in_order() -> None:
    # AWS guide, Map: "A MaxConcurrency value of 1 invokes the ItemProcessor once for each array element in the
    # order of their appearance in the input, and will not start a new iteration until the previous has completed."
    order: list[tuple[str, int]] = []
    lock = threading.Lock()

    def step(request: TaskRequest) -> Any:
        with lock:
            order.append(("start", request.parameters))
        with lock:
            order.append(("end", request.parameters))
        return request.parameters

    state = {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": processor(("T", task("step"))), "End": True}
    result = run(machine({"M": state}), list(range(5)), {"step": step})
    assert result.output == list(range(5))
    assert order == [(edge, i) for i in range(5) for edge in ("start", "end")]


def test_fail_state_in_an_iteration_fails_the_map_and_catch_gets_its_error() -> None:
    # AWS guide, Map: "If any iteration fails, entire Map state fails"; the Catcher sees the iteration's error.
    check = {
        "Type": "Choice",
        "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Reject"}],
        "Default": "Accept",
    }
    iteration = {
        "StartAt": "Check",
        "States": {
            "Check": check,
            "Reject": {"Type": "Fail", "Error": "Item.Rejected", "Cause": "two"},
            "Accept": pass_state(),
        },
    }
    state = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "MaxConcurrency": 1,
        "ItemProcessor": iteration,
        "Catch": [{"ErrorEquals": ["Item.Rejected"], "ResultPath": "$.error", "Next": "Handled"}],
        "End": True,
    }
    result = run(machine({"M": state, "Handled": pass_state()}), {"items": [1, 2, 3]})
    assert result.output == {"items": [1, 2, 3], "error": {"Error": "Item.Rejected", "Cause": "two"}}
    event_types = types(result)
    assert event_types.count("MapIterationSucceeded") == 1 and event_types.count("MapIterationFailed") == 1
    assert "MapIterationStarted" in event_types and event_types.index("MapStateFailed") < event_types.index(
        "MapStateExited"
    )


def test_retry_on_a_map_state() -> None:
    # Spec, "Retrying after error": a Retrier on a Map state runs the whole Map again.
    attempts: list[int] = []

    def flaky(request: TaskRequest) -> Any:
        attempts.append(request.parameters)
        if attempts.count(1) == 1 and request.parameters == 1:
            raise StatesError("Item.Flaky", "first try of item 1")
        return request.parameters * 10

    state = {
        "Type": "Map",
        "MaxConcurrency": 1,
        "ItemProcessor": processor(("T", task("flaky"))),
        "Retry": [{"ErrorEquals": ["Item.Flaky"], "IntervalSeconds": 3, "MaxAttempts": 1}],
        "End": True,
    }
    clock = VirtualClock()
    result = run(machine({"M": state}), [0, 1, 2], {"flaky": flaky}, clock=clock)
    assert result.output == [0, 10, 20] and attempts == [0, 1, 0, 1, 2] and clock.slept == [3]
    assert types(result).count("MapStateStarted") == 2


def test_empty_items_give_an_empty_array() -> None:
    # Spec, "Map State": the output is an array with one element per item.
    state = {
        "Type": "Map",
        "ItemsPath": "$.items",
        "ItemProcessor": processor(("P", pass_state())),
        "ResultPath": "$.out",
        "End": True,
    }
    result = run(machine({"M": state}), {"items": []})
    assert result.output == {"items": [], "out": []}
    assert next(event for event in result.history if event.type == "MapStateStarted").details == {"length": 0}


def test_map_history_event_order() -> None:
    # AWS history event types of a Map state, as GetExecutionHistory lists them.
    state = {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": processor(("P", pass_state())), "End": True}
    result = run(machine({"M": state}), ["a", "b"])
    assert types(result) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "MapIterationStarted",
        "PassStateEntered",
        "PassStateExited",
        "MapIterationSucceeded",
        "MapIterationStarted",
        "PassStateEntered",
        "PassStateExited",
        "MapIterationSucceeded",
        "MapStateSucceeded",
        "MapStateExited",
        "ExecutionSucceeded",
    ]
    assert result.history[2].details == {"length": 2}
    assert [event.details for event in result.history if event.type == "MapIterationStarted"] == [
        {"name": "M", "index": 0},
        {"name": "M", "index": 1},
    ]


# --- Errors: Retry and Catch --------------------------------------------------------------------


class Flaky:
    """Fails with ``error`` the first ``failures`` calls."""

    def __init__(self, failures: int, error: str = "Flaky.Error") -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, request: TaskRequest) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise StatesError(self.error, f"call {self.calls}")
        return {"calls": self.calls}


def test_backoff_rate_multiplies_the_interval() -> None:
    # AWS guide, "Retry" example: IntervalSeconds 3, MaxAttempts 2, BackoffRate 1.5 -> retries after 3 s, then 4.5 s.
    clock, flaky = VirtualClock(), Flaky(failures=2, error="States.Timeout")
    retry = [{"ErrorEquals": ["States.Timeout"], "IntervalSeconds": 3, "MaxAttempts": 2, "BackoffRate": 1.5}]
    result = run(machine({"T": task("flaky", Retry=retry)}), handlers={"flaky": flaky}, clock=clock)
    assert result.output == {"calls": 3} and clock.slept == [3, 4.5]


def test_max_delay_seconds_caps_the_back_off() -> None:
    # AWS guide, Retrier fields: MaxDelaySeconds caps the interval that BackoffRate grows.
    clock = VirtualClock()
    retry = [
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": 5,
            "MaxAttempts": 4,
            "BackoffRate": 3,
            "MaxDelaySeconds": 20,
        }
    ]
    result = run(machine({"T": task("flaky", Retry=retry)}), handlers={"flaky": Flaky(10)}, clock=clock)
    assert (result.status, result.error, result.cause) == ("FAILED", "Flaky.Error", "call 5")
    assert clock.slept == [5, 15, 20, 20]


def test_max_attempts_zero_never_retries_and_catch_applies() -> None:
    # Spec, Retrier: "A value of zero is permitted and indicates that the error or errors should never be retried."
    flaky = Flaky(failures=1)
    state = task(
        "flaky",
        Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}],
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Recovered"}],
    )
    result = run(machine({"T": state, "Recovered": pass_state()}), handlers={"flaky": flaky})
    assert flaky.calls == 1 and result.output == {"Error": "Flaky.Error", "Cause": "call 1"}


def test_catchers_are_scanned_in_order_and_place_error_output_at_result_path() -> None:
    # AWS guide, "Fallback states" example: the first matching Catcher wins; its ResultPath keeps the input.
    catch = [
        {"ErrorEquals": ["java.lang.Exception"], "ResultPath": "$.error-info", "Next": "RecoveryState"},
        {"ErrorEquals": ["States.ALL"], "Next": "EndState"},
    ]
    states = {
        "T": task("boom", Catch=catch),
        "RecoveryState": pass_state(),
        "EndState": pass_state(Result="end"),
    }
    handlers = {"boom": fails_with("java.lang.Exception", "oops")}
    assert run(machine(states), {"keep": 1}, handlers).output == {
        "keep": 1,
        "error-info": {"Error": "java.lang.Exception", "Cause": "oops"},
    }
    assert run(machine(states), {"keep": 1}, {"boom": fails_with("Other")}).output == "end"


def test_a_python_exception_in_a_handler_is_states_task_failed_with_a_useful_cause() -> None:
    # Spec, "Errors": States.TaskFailed, "A Task State failed during the execution".
    def broken(request: TaskRequest) -> Any:
        return {"ratio": 1 / request.parameters["n"]}

    result = run(machine({"T": task("broken", Parameters={"n": 0})}), handlers={"broken": broken})
    assert (result.status, result.error) == ("FAILED", "States.TaskFailed")
    assert result.cause == "ZeroDivisionError: division by zero"
    assert result.history[-2].type == "TaskFailed"

    def silent(request: TaskRequest) -> Any:
        raise LookupError()

    assert run(machine({"T": task("silent")}), handlers={"silent": silent}).cause == "LookupError"


@pytest.mark.parametrize(
    ("error", "error_equals", "caught"),
    [
        ("States.Timeout", ["States.TaskFailed"], False),  # TaskFailed matches any error but States.Timeout
        ("Custom.Error", ["States.TaskFailed"], True),
        ("States.Timeout", ["States.ALL"], True),
        ("States.DataLimitExceeded", ["States.ALL"], False),  # terminal: States.ALL does not catch it
        ("States.Runtime", ["States.ALL"], False),  # terminal: never caught or retried
        ("Custom.Error", ["Other.Error", "Custom.Error"], True),
    ],
)
def test_error_name_matching(error: str, error_equals: list[str], caught: bool) -> None:
    # AWS guide, "Error names": States.ALL, States.TaskFailed, States.DataLimitExceeded, States.Runtime.
    states = {"T": task("f", Catch=[{"ErrorEquals": error_equals, "Next": "C"}]), "C": {"Type": "Succeed"}}
    result = run(machine(states), handlers={"f": fails_with(error, "why")})
    assert result.status == ("SUCCEEDED" if caught else "FAILED")


def test_states_all_must_be_alone_and_last() -> None:
    # Spec, Retrier/Catcher: States.ALL "MUST appear alone in the ErrorEquals array and MUST appear in the
    # last Retrier".
    not_last = task("r", Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}])
    not_alone = task("r", Catch=[{"ErrorEquals": ["X", "States.ALL"], "Next": "S"}])
    with pytest.raises(DefinitionError) as raised:
        validate(machine({"S": not_last}))
    assert raised.value.problems == ["States.S.Retry[0]: States.ALL must appear alone, in the last Retrier"]
    with pytest.raises(DefinitionError) as raised:
        validate(machine({"S": not_alone}))
    assert raised.value.problems == ["States.S.Catch[0]: States.ALL must appear alone, in the last Catcher"]


# --- Task ---------------------------------------------------------------------------------------


def test_task_timeout_seconds_fails_with_states_timeout() -> None:
    # Spec, Task: "If the task runs longer than the specified seconds, then this state fails with the
    # States.Timeout Error Name."
    clock = VirtualClock()

    def slow(request: TaskRequest) -> Any:
        clock.sleep(60, request.cancelled)
        return "late"

    result = run(machine({"T": task("slow", TimeoutSeconds=30)}), handlers={"slow": slow}, clock=clock)
    assert (result.status, result.error) == ("FAILED", "States.Timeout")
    assert types(result)[-2:] == ["TaskTimedOut", "ExecutionFailed"]


def test_timeout_and_heartbeat_seconds_paths_read_the_input_that_input_path_kept() -> None:
    # AWS guide, Task: TimeoutSecondsPath / HeartbeatSecondsPath are reference paths into the state input.
    seen: list[float | None] = []

    def spy(request: TaskRequest) -> Any:
        seen.append(request.timeout)
        return "ok"

    state = task(
        "spy", InputPath="$.limits", TimeoutSecondsPath="$.timeout", HeartbeatSecondsPath="$.heartbeat"
    )
    result = run(machine({"T": state}), {"limits": {"timeout": 30, "heartbeat": 10}}, {"spy": spy})
    assert result.output == "ok" and seen == [30]
    scheduled = next(event for event in result.history if event.type == "TaskScheduled")
    assert (scheduled.details["timeoutInSeconds"], scheduled.details["heartbeatInSeconds"]) == (30, 10)
    missing = run(machine({"T": state}), {"limits": {"heartbeat": 10}}, {"spy": spy})
    assert missing.error == "States.Runtime" and "$.timeout" in missing.cause


def test_a_task_result_over_256_kib_is_data_limit_exceeded() -> None:
    # AWS guide, "States.DataLimitExceeded": the output of a connector is larger than the payload quota;
    # "a terminal error that can't be caught by the States.ALL error type".
    states = {
        "T": task("big", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "C"}]),
        "C": {"Type": "Succeed"},
    }
    result = run(machine(states), handlers={"big": lambda request: {"blob": "x" * 262_144}})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
    assert types(result)[-2:] == ["TaskFailed", "ExecutionFailed"]


def test_an_execution_output_over_256_kib_fails_the_execution() -> None:
    # AWS quotas: a state's output (and so the execution's) is at most 256 KiB of UTF-8 JSON.
    padding = "é" * 131_072  # 262,144 bytes of UTF-8 plus the quotes
    result = run(machine({"P": pass_state(Result=padding)}))
    assert (result.status, result.error, result.output) == ("FAILED", "States.DataLimitExceeded", None)
    assert run(machine({"P": pass_state(Result="é" * 131_070)})).status == "SUCCEEDED"


# --- Wait ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "slept"),
    [
        ({"Seconds": 10}, [10]),
        ({"SecondsPath": "$.delay"}, [5]),
        ({"Timestamp": "2024-01-01T00:02:00Z"}, [120]),
        ({"TimestampPath": "$.at"}, [0.0]),  # in the past: the state does not wait
    ],
)
def test_wait_state(wait: dict[str, Any], slept: list[float]) -> None:
    # Spec, "Wait State": Seconds, Timestamp, SecondsPath, TimestampPath; the input passes through.
    clock = VirtualClock(datetime(2024, 1, 1, tzinfo=UTC))
    data = {"delay": 5, "at": "2016-03-14T01:59:00Z"}
    result = run(machine({"W": {"Type": "Wait", **wait, "End": True}}), data, clock=clock)
    assert result.output == data and clock.slept == slept


# --- Choice -------------------------------------------------------------------------------------

SPEC_CHOICE = {
    "ChoiceStateX": {
        "Type": "Choice",
        "Choices": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
            {
                "And": [
                    {"Variable": "$.value", "IsPresent": True},
                    {"Variable": "$.value", "IsNumeric": True},
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {"Variable": "$.value", "NumericLessThan": 30},
                ],
                "Next": "ValueInTwenties",
            },
            {
                "Or": [
                    {"Variable": "$.rating", "NumericGreaterThanPath": "$.auditThreshold"},
                    {"Variable": "$.flagged", "BooleanEquals": True},
                ],
                "Next": "StartAudit",
            },
        ],
        "Default": "RecordEvent",
    },
    "Public": pass_state(Result="Public"),
    "ValueInTwenties": pass_state(Result="ValueInTwenties"),
    "StartAudit": pass_state(Result="StartAudit"),
    "RecordEvent": pass_state(Result="RecordEvent"),
}


@pytest.mark.parametrize(
    ("data", "target"),
    [
        ({"type": "Public"}, "Public"),
        ({"type": "Private", "value": 25}, "ValueInTwenties"),
        ({"type": "Private", "value": "25", "rating": 9, "auditThreshold": 5}, "StartAudit"),
        ({"type": "Private", "value": 35, "rating": 1, "auditThreshold": 5, "flagged": True}, "StartAudit"),
        ({"type": "Private", "value": 35, "rating": 1, "auditThreshold": 5, "flagged": False}, "RecordEvent"),
    ],
)
def test_spec_choice_example_with_not_and_or_and_default(data: dict[str, Any], target: str) -> None:
    # Spec, "Choice State" example (Not, And with IsPresent/IsNumeric, a ...Path comparison, Default).
    assert run(machine(SPEC_CHOICE), data).output == target


def test_choice_on_a_missing_variable_is_a_runtime_error_unless_asked_with_is_present() -> None:
    # AWS guide, Choice: a Variable that selects nothing is States.Runtime; IsPresent tests for it.
    states = {
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.missing", "StringEquals": "x", "Next": "X"}],
            "Default": "X",
        },
        "X": pass_state(),
    }
    result = run(machine(states), {"present": 1})
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "$.missing" in result.cause
    present = {
        **states,
        "C": {**states["C"], "Choices": [{"Variable": "$.missing", "IsPresent": False, "Next": "X"}]},
    }
    assert run(machine(present), {"present": 1}).status == "SUCCEEDED"


def test_choice_without_a_match_or_default_fails_with_no_choice_matched() -> None:
    # Spec, Choice: "If no Choice matches and no Default is specified, the interpreter raises States.NoChoiceMatched."
    states = {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "X"}]},
        "X": pass_state(),
    }
    assert run(machine(states), {"n": 2}).error == "States.NoChoiceMatched"


def test_a_comparison_on_a_value_of_another_type_does_not_match() -> None:
    # Spec, Choice rules: a type mismatch between the Variable's value and the operator is no match, not an error.
    states = {
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "X"}],
            "Default": "D",
        },
        "X": pass_state(Result="X"),
        "D": pass_state(Result="D"),
    }
    assert run(machine(states), {"n": "1"}).output == "D"


# --- Intrinsic functions ------------------------------------------------------------------------


def test_format_renders_every_kind_of_value() -> None:
    # AWS guide, States.Format; values as AWS renders them (strings bare, JSON scalars, Java-style containers).
    data = {"i": 3, "f": 1.1, "t": True, "n": None, "s": "text", "o": {"Arg1": 1, "Arg2": []}, "a": [1, "x"]}
    template = "States.Format('{} {} {} {} {} {} {}', $.i, $.f, $.t, $.n, $.s, $.o, $.a)"
    result = run(machine({"P": pass_state(Parameters={"s.$": template})}), data)
    assert result.output == {"s": "3 1.1 true null text {Arg1=1, Arg2=[]} [1, x]"}


def test_format_example_from_the_guide() -> None:
    # AWS guide, States.Format: the literal template and the template taken from a path give the same text.
    data = {"name": "Arnav", "template": "Hello, my name is {}."}
    parameters = {
        "a.$": "States.Format('Hello, my name is {}.', $.name)",
        "b.$": "States.Format($.template, $.name)",
    }
    assert run(machine({"P": pass_state(Parameters=parameters)}), data).output == {
        "a": "Hello, my name is Arnav.",
        "b": "Hello, my name is Arnav.",
    }


def test_string_to_json() -> None:
    # AWS guide, States.StringToJson example; blank text parses as null; text that is not JSON is an intrinsic failure.
    parameters = {
        "json.$": "States.StringToJson($.escapedJsonString)",
        "blank.$": "States.StringToJson($.blank)",
    }
    data = {"escapedJsonString": '{"foo": "bar"}', "blank": ""}
    assert run(machine({"P": pass_state(Parameters=parameters)}), data).output == {
        "json": {"foo": "bar"},
        "blank": None,
    }
    result = run(machine({"P": pass_state(Parameters={"x.$": "States.StringToJson($.s)"})}), {"s": "{oops"})
    assert (result.status, result.error) == ("FAILED", "States.IntrinsicFailure")
    assert "States.StringToJson" in result.cause


def test_intrinsics_in_result_selector_and_json_to_string() -> None:
    # AWS guide, "Fields that support intrinsic functions": Task ResultSelector; States.JsonToString is compact.
    state = task(
        "answer",
        ResultSelector={"text.$": "States.JsonToString($.body)", "ids.$": "States.ArrayUnique($.ids)"},
    )
    result = run(
        machine({"T": state}), handlers={"answer": lambda request: {"body": {"foo": "bar"}, "ids": [1, 1, 2]}}
    )
    assert result.output == {"text": '{"foo":"bar"}', "ids": [1, 2]}


def test_an_intrinsic_with_the_wrong_number_of_arguments_is_a_definition_error() -> None:
    # AWS guide, intrinsic functions: each takes a fixed number of arguments.
    with pytest.raises(DefinitionError) as raised:
        validate(machine({"P": pass_state(Parameters={"x.$": "States.ArrayGetItem($.a)"})}))
    assert raised.value.problems == [
        "States.P.Parameters.x.$: States.ArrayGetItem takes 2 arguments, got 1 in 'States.ArrayGetItem($.a)'"
    ]


# --- Fail ---------------------------------------------------------------------------------------


def test_fail_state_error_and_cause_from_paths() -> None:
    # AWS guide, "Fail state": ErrorPath and CausePath take a reference path or an intrinsic function.
    state = {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('step {} failed', $.step)"}
    result = run(machine({"F": state}), {"code": "Custom.Error", "step": 3})
    assert (result.status, result.error, result.cause) == ("FAILED", "Custom.Error", "step 3 failed")


# --- Definitions --------------------------------------------------------------------------------


def problems(definition: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as raised:
        validate(definition)
    return raised.value.problems


MAP_PROCESSOR = processor(("I", pass_state()))


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ({"A": {"Type": "Pass", "Next": "B"}}, "States.A: Next 'B' does not exist"),
        ({"A": pass_state(), "B": pass_state()}, "States.B: unreachable from StartAt 'A'"),
        ({"A": {"Type": "Pass", "Next": "A", "End": True}}, "States.A: has both Next and End"),
        ({"A": {"Type": "Pass"}}, "States.A: has neither Next nor End"),
        (
            {"C": {"Type": "Choice", "Default": "X"}, "X": pass_state()},
            "States.C: Choices must be a non-empty array",
        ),
        (
            {"T": task("r", Retry=[{"ErrorEquals": []}])},
            "States.T.Retry[0]: ErrorEquals must be a non-empty array",
        ),
        (
            {"M": {"Type": "Map", "ItemsPath": "$.items[", "ItemProcessor": MAP_PROCESSOR, "End": True}},
            "States.M.ItemsPath: invalid path '$.items['",
        ),
        (
            {"M": {"Type": "Map", "ItemsPath": "$.items[*]", "ItemProcessor": MAP_PROCESSOR, "End": True}},
            "States.M.ItemsPath: '$.items[*]' is not a Reference Path",
        ),
        (
            {"A": pass_state(Parameters={"x.$": "States.MathAdd(1)"})},
            "States.A.Parameters.x.$: States.MathAdd takes 2",
        ),
        ({"A": pass_state(Retries=1)}, "States.A: field 'Retries' is not allowed here"),
        ({"A": {"End": True}}, "States.A: Type is required"),
        ({"W": {"Type": "Wait", "End": True}}, "States.W: exactly one of Seconds, Timestamp"),
        (
            {"T": task("r", Catch=[{"ErrorEquals": ["X"], "Next": "Nowhere"}])},
            "States.T.Catch[0]: Next 'Nowhere' does not exist",
        ),
    ],
)
def test_definition_mistakes_are_rejected_with_a_clear_message(states: dict[str, Any], expected: str) -> None:
    # Spec, "Structure of a State Machine" and each state's required fields.
    found = problems(machine(states))
    assert any(problem.startswith(expected) for problem in found), found


def test_every_valid_construct_is_accepted() -> None:
    # Spec and AWS guide: Comment is allowed on the machine, states, branches, processors, Choice rules,
    # Retriers and Catchers; ProcessorConfig INLINE; QueryLanguage JSONPath; Version; legacy Iterator.
    iterator = {
        "Comment": "legacy",
        "ProcessorConfig": {"Mode": "INLINE"},
        **processor(("L", pass_state(Comment="l"))),
    }
    states = {
        "Start": {"Type": "Pass", "Comment": "c", "QueryLanguage": "JSONPath", "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Comment": "c",
            "Choices": [
                {"Comment": "rule", "Variable": "$.a", "IsPresent": True, "Next": "Fan"},
                {
                    "Comment": "not",
                    "Not": {"Comment": "inner", "Variable": "$.b", "IsNull": True},
                    "Next": "Fan",
                },
            ],
            "Default": "Fan",
        },
        "Fan": {
            "Type": "Parallel",
            "Comment": "c",
            "Branches": [{"Comment": "branch", **processor(("B", pass_state(Comment="b")))}],
            "Next": "Each",
        },
        "Each": {
            "Type": "Map",
            "Comment": "c",
            "ItemSelector": {"v.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "Comment": "p",
                "ProcessorConfig": {"Mode": "INLINE"},
                **processor(("E", pass_state())),
            },
            "Next": "Legacy",
        },
        "Legacy": {"Type": "Map", "Iterator": iterator, "Next": "Work"},
        "Work": {
            "Type": "Task",
            "Resource": "r",
            "Comment": "c",
            "Retry": [{"Comment": "retrier", "ErrorEquals": ["States.ALL"], "MaxAttempts": 0}],
            "Catch": [{"Comment": "catcher", "ErrorEquals": ["States.ALL"], "Next": "Failed"}],
            "Next": "Wait",
        },
        "Wait": {"Type": "Wait", "Comment": "c", "Seconds": 0, "Next": "Done"},
        "Done": {"Type": "Succeed", "Comment": "c"},
        "Failed": {"Type": "Fail", "Comment": "c", "Error": "E", "Cause": "C"},
    }
    definition = machine(states, Comment="top", Version="1.0", QueryLanguage="JSONPath", TimeoutSeconds=60)
    validate(definition)
    result = run(definition, {"a": 1}, {"r": lambda request: "done"})
    assert (result.status, result.output) == ("SUCCEEDED", "done"), result.cause


# --- History and the engine ---------------------------------------------------------------------


def test_a_caught_error_exits_the_state_before_the_catcher_target_runs() -> None:
    # AWS history of a caught Task failure: TaskFailed, then TaskStateExited with the error output.
    states = {"T": task("boom", Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}]), "H": pass_state()}
    result = run(machine(states), {}, {"boom": fails_with("E", "c")})
    assert types(result)[4:8] == ["TaskFailed", "TaskStateExited", "PassStateEntered", "PassStateExited"]


def test_run_takes_the_options_of_start() -> None:
    # cvpipe.asl API: Engine.run is start + wait.
    engine = Engine(registry(), VirtualClock())
    definition = machine({"P": pass_state(Parameters={"name.$": "$$.Execution.Name"})})
    ran = engine.run(definition, {}, name="same", state_machine_name="SM")
    started = engine.start(definition, {}, name="same", state_machine_name="SM").wait()
    assert ran.output == started.output == {"name": "same"} and ran.arn == started.arn


# --- JSONata -------------------------------------------------------------------------------------
# AWS guide, "Transforming data with JSONata in Step Functions" and "JSONata functions provided by
# Step Functions" (docs.aws.amazon.com/step-functions/latest/dg/transforming-data.html).


def jsonata(states: dict[str, Any], **top_level: Any) -> dict[str, Any]:
    return machine(states, QueryLanguage="JSONata", **top_level)


def test_jsonata_arguments_and_output_read_states_input_and_result() -> None:
    # "Arguments" is the JSONata form of Parameters; "Output" shapes the state output from
    # $states.input and $states.result (the guide's Task example).
    state = task(
        Arguments={"product": "{% $states.input.product %}", "count": "{% $count($states.input.orders) %}"},
        Output={"result": "{% $states.result %}", "customer": "{% $states.input.customer %}"},
    )
    data = {"product": "p1", "orders": [1, 2, 3], "customer": "c9"}
    result = run(jsonata({"T": state}), data, {"work": echo})
    assert result.output == {"result": {"product": "p1", "count": 3}, "customer": "c9"}


def test_jsonata_defaults_output_is_the_result_and_arguments_the_input() -> None:
    # Without Arguments the task receives $states.input; without Output the state outputs $states.result.
    result = run(jsonata({"T": task()}), {"a": 1}, {"work": lambda r: {"got": r.parameters}})
    assert result.output == {"got": {"a": 1}}
    assert run(jsonata({"P": pass_state()}), {"a": 1}).output == {"a": 1}


def test_jsonata_expression_as_the_whole_output_and_string_concatenation() -> None:
    state = pass_state(Output="{% $states.input.title & ' ' & $states.input.name %}")
    assert run(jsonata({"P": state}), {"title": "Dr", "name": "Jane"}).output == "Dr Jane"


def test_a_string_that_is_not_wholly_an_expression_is_a_literal() -> None:
    state = pass_state(Output={"text": "cost: {% 1 + 1 %}", "dollar": "$states.input"})
    assert run(jsonata({"P": state}), {}).output == {"text": "cost: {% 1 + 1 %}", "dollar": "$states.input"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$partition([1,2,3,4], 2)", [[1, 2], [3, 4]]),
        ("$partition([1,2,3,4,5], 2)", [[1, 2], [3, 4], [5]]),
        ("$range(0, 10, 2)", [0, 2, 4, 6, 8, 10]),
        ("$range(4, 1, -1)", [4, 3, 2, 1]),
        (
            "$hash('input data', 'SHA-256')",
            "5fd1f22b1b69c9e2ae46f1f81dd3bea8bb29e1fb1b8d7cbc1bc04ab7ae0d2eb7",
        ),
        ("$parse('{\"key\": [1, null]}')", {"key": [1, None]}),
        ("$random(42) = $random(42)", True),
        ("$random() < 1 and $random() >= 0", True),
        ("$length($uuid())", 36),
        ("$states.context.Execution.Name", "jsonata-run"),
        ("$sum($states.input.n) / 2", 3),
        ("$states.input.n[$ > 1]", [2, 3]),
        ("$string($states.input)", '{"n":[1,2,3]}'),
    ],
)
def test_jsonata_functions_step_functions_provides(expression: str, expected: Any) -> None:
    # AWS guide, "JSONata functions provided by Step Functions": $partition, $range (inclusive end),
    # $hash (MD5, SHA-1, SHA-256, SHA-384, SHA-512), $random([seed]), $uuid, $parse.
    import hashlib

    if expression.startswith("$hash"):
        expected = hashlib.sha256(b"input data").hexdigest()
    definition = jsonata({"P": pass_state(Output="{% " + expression + " %}")})
    assert run(definition, {"n": [1, 2, 3]}, name="jsonata-run").output == expected


def test_a_failing_expression_is_states_query_evaluation_error_and_can_be_caught() -> None:
    # "States.QueryEvaluationError: a JSONata expression failed" - caught like any other error.
    failing = pass_state(Output="{% $states.input.a + 1 %}")
    result = run(jsonata({"P": failing}), {"a": "text"})
    assert (result.status, result.error) == ("FAILED", "States.QueryEvaluationError")
    assert "'Output'" in result.cause and "entered at the event id #2" in result.cause
    undefined = run(jsonata({"P": pass_state(Output="{% $states.input.missing %}")}), {})
    assert undefined.error == "States.QueryEvaluationError" and "returned nothing" in undefined.cause
    caught = task(
        Arguments="{% $states.input.a + 1 %}",
        Catch=[{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Handled"}],
    )
    del caught["End"]
    caught["Next"] = "Handled"
    handled = run(jsonata({"T": caught, "Handled": pass_state()}), {"a": "x"}, {"work": echo})
    assert handled.output["Error"] == "States.QueryEvaluationError"


def test_jsonata_catch_output_reads_states_error_output() -> None:
    # AWS guide: a Catcher's Output (default $states.errorOutput) and Assign see $states.errorOutput.
    state = task(
        Catch=[
            {
                "ErrorEquals": ["States.ALL"],
                "Output": {"why": "{% $states.errorOutput.Error %}", "was": "{% $states.input %}"},
                "Assign": {"failedWith": "{% $states.errorOutput.Cause %}"},
                "Next": "After",
            }
        ]
    )
    del state["End"]
    state["Next"] = "After"
    after = pass_state(Output={"output": "{% $states.input %}", "variable": "{% $failedWith %}"})
    result = run(jsonata({"T": state, "After": after}), {"x": 1}, {"work": fails_with("Oops", "broken")})
    assert result.output == {"output": {"why": "Oops", "was": {"x": 1}}, "variable": "broken"}


def test_jsonata_choice_conditions_assign_and_output() -> None:
    # AWS guide, Choice state in JSONata: rules with Condition; a rule's Output and Assign apply when it matches.
    choice = {
        "Type": "Choice",
        "Choices": [
            {"Condition": "{% $states.input.n > 10 %}", "Next": "Big", "Assign": {"size": "big"}},
            {"Condition": "{% $states.input.n > 5 %}", "Next": "Big", "Output": {"n": 0}},
        ],
        "Default": "Small",
        "Assign": {"size": "small"},
    }
    big = pass_state(Output={"n": "{% $states.input.n %}", "size": "{% $size %}"})
    small = pass_state(Output="{% $size %}")
    definition = jsonata({"C": choice, "Big": big, "Small": small})
    assert run(definition, {"n": 11}).output == {"n": 11, "size": "big"}
    assert run(definition, {"n": 1}).output == "small"
    not_boolean = jsonata(
        {"C": {**choice, "Choices": [{"Condition": "{% 1 %}", "Next": "Big"}]}, "Big": big, "Small": small}
    )
    assert run(not_boolean, {"n": 1}).error == "States.QueryEvaluationError"


def test_jsonata_map_items_and_item_selector_with_the_map_context() -> None:
    # AWS guide, Map state in JSONata: Items, and ItemSelector reading $states.context.Map.Item.
    state = {
        "Type": "Map",
        "Items": "{% $states.input.orders %}",
        "ItemSelector": {
            "index": "{% $states.context.Map.Item.Index %}",
            "order": "{% $states.context.Map.Item.Value %}",
            "customer": "{% $states.input.customer %}",
        },
        "ItemProcessor": processor(
            ("Inner", pass_state(Output="{% $states.input.index & ':' & $states.input.order %}"))
        ),
        "Output": "{% $join($states.result, ',') %}",
        "End": True,
    }
    result = run(jsonata({"M": state}), {"orders": ["a", "b"], "customer": "c"})
    assert result.output == "0:a,1:b"


def test_jsonata_wait_and_timeouts_take_expressions() -> None:
    wait = {"Type": "Wait", "Seconds": "{% $states.input.delay * 2 %}", "Next": "T"}
    definition = jsonata({"W": wait, "T": task(TimeoutSeconds="{% $states.input.delay %}")})
    clock = VirtualClock()
    result = run(definition, {"delay": 3}, {"work": echo}, clock=clock)
    assert result.status == "SUCCEEDED" and clock.slept == [6]
    scheduled = next(e for e in result.history if e.type == "TaskScheduled")
    assert scheduled.details["timeoutInSeconds"] == 3


def test_query_language_per_state_and_jsonpath_only_fields_refused() -> None:
    # A JSONPath machine may have JSONata states; the reverse is refused, as are fields of the other language.
    mixed = machine(
        {
            "A": {"Type": "Pass", "Result": {"x": 1}, "Next": "B"},
            "B": pass_state(QueryLanguage="JSONata", Output="{% $states.input.x + 1 %}"),
        }
    )
    assert run(mixed).output == 2
    with pytest.raises(DefinitionError) as refused:
        validate(jsonata({"A": pass_state(QueryLanguage="JSONPath")}))
    assert "not allowed in a state machine whose QueryLanguage is JSONata" in refused.value.problems[0]
    with pytest.raises(DefinitionError) as fields:
        validate(jsonata({"T": task(Parameters={"a": 1}, ResultPath="$.r")}))
    assert any("'Parameters' is JSONPath-only" in p for p in fields.value.problems)
    assert any("'ResultPath' is JSONPath-only" in p for p in fields.value.problems)
    with pytest.raises(DefinitionError) as jsonata_only:
        validate(machine({"T": task(Output={"a": 1})}))
    assert "'Output' is JSONata-only" in jsonata_only.value.problems[0]


# --- Variables -----------------------------------------------------------------------------------
# AWS guide, "Passing data between states with variables"
# (docs.aws.amazon.com/step-functions/latest/dg/workflow-variables.html).


def test_assign_then_read_in_a_later_state_jsonata() -> None:
    first = pass_state(Assign={"productName": "product1", "count": 42, "available": True})
    first["Next"] = "Second"
    del first["End"]
    second = pass_state(
        Output={"name": "{% $productName %}", "twice": "{% $count * 2 %}", "a": "{% $available %}"}
    )
    result = run(jsonata({"First": first, "Second": second}), {})
    assert result.output == {"name": "product1", "twice": 84, "a": True}


def test_assign_evaluates_every_value_before_assigning_any() -> None:
    # The guide's evaluation order: Assign sees the variables as they were when the state started,
    # so {"x": "{% $y %}", "y": "{% $x %}"} swaps them.
    init = {"Type": "Pass", "Assign": {"x": 1, "y": 2}, "Next": "Swap"}
    swap = {
        "Type": "Pass",
        "Assign": {"x": "{% $y %}", "y": "{% $x %}"},
        "Output": "{% $x %}",
        "Next": "Show",
    }
    show = pass_state(Output={"x": "{% $x %}", "y": "{% $y %}"})
    result = run(jsonata({"Init": init, "Swap": swap, "Show": show}), {})
    assert result.output == {"x": 2, "y": 1}
    assert json_of(result, "PassStateExited", 1) == 1  # Output saw x before the swap


def json_of(result: Any, event_type: str, index: int) -> Any:
    import json

    events = [e for e in result.history if e.type == event_type]
    return json.loads(events[index].details["output"])


def test_jsonpath_assign_reads_the_result_and_paths_read_variables() -> None:
    # In JSONPath states, an Assign value's path reads the state's result (after ResultSelector),
    # and "$name" paths read a variable in Parameters, intrinsics and Choice rules.
    fetch = task(
        "fetch",
        ResultSelector={"product.$": "$.item"},
        Assign={"productName.$": "$.product.name", "price.$": "$.product.price", "source": "catalog"},
        ResultPath=None,
    )
    fetch["Next"] = "Check"
    del fetch["End"]
    check = {
        "Type": "Choice",
        "Choices": [{"Variable": "$price", "NumericGreaterThan": 10, "Next": "Report"}],
        "Default": "Cheap",
    }
    report = task(
        "echo",
        Parameters={
            "name.$": "$productName",
            "line.$": "States.Format('{} costs {} ({})', $productName, $price, $source)",
            "input.$": "$",
        },
    )
    handlers = {"fetch": lambda r: {"item": {"name": "lamp", "price": 12}}, "echo": echo}
    definition = machine({"Fetch": fetch, "Check": check, "Report": report, "Cheap": pass_state()})
    result = run(definition, {"id": 7}, handlers)
    assert result.output == {"name": "lamp", "line": "lamp costs 12 (catalog)", "input": {"id": 7}}


def test_inner_states_read_outer_variables_and_their_assignments_stay_inside() -> None:
    # The guide's scope rules: a Map iteration or Parallel branch reads the variables of the outer
    # scope; what it assigns is not visible after the Map or Parallel.
    outer = {"Type": "Pass", "Assign": {"rate": 3, "label": "outer"}, "Next": "M"}
    inner = processor(
        (
            "Scale",
            {
                "Type": "Pass",
                "Assign": {"label": "inner"},
                "Output": "{% $states.input * $rate %}",
                "Next": "Read",
            },
        ),
        ("Read", pass_state(Output={"value": "{% $states.input %}", "label": "{% $label %}"})),
    )
    mapped = {"Type": "Map", "ItemProcessor": inner, "Next": "After"}
    after = pass_state(Output={"results": "{% $states.input %}", "label": "{% $label %}"})
    result = run(jsonata({"Outer": outer, "M": mapped, "After": after}), [1, 2])
    assert result.output == {
        "results": [{"value": 3, "label": "inner"}, {"value": 6, "label": "inner"}],
        "label": "outer",
    }


def test_a_variable_read_before_any_state_assigns_it_is_refused() -> None:
    # Step Functions refuses a definition that reads a variable no earlier state assigns.
    early = jsonata({"A": pass_state(Output="{% $later %}")})
    with pytest.raises(DefinitionError) as refused:
        validate(early)
    assert "States.A.Output: reads the variable $later" in refused.value.problems[0]
    jsonpath = machine({"A": pass_state(Parameters={"x.$": "$nowhere.field"})})
    with pytest.raises(DefinitionError):
        validate(jsonpath)
    # Assigned on one branch of a Choice is enough ("on some path").
    choice = {
        "Type": "Choice",
        "Choices": [{"Condition": "{% $states.input.a %}", "Next": "Set"}],
        "Default": "Use",
    }
    some_path = jsonata(
        {
            "C": choice,
            "Set": {"Type": "Pass", "Assign": {"v": 1}, "Next": "Use"},
            "Use": pass_state(Output="{% $v %}"),
        }
    )
    validate(some_path)
    assert run(some_path, {"a": True}).output == 1
    own = jsonata({"A": pass_state(Assign={"v": 1}, Output="{% $v %}")})
    with pytest.raises(DefinitionError):
        validate(own)  # a state's Output does not see its own Assign


def test_variables_assigned_inside_a_map_or_on_no_path_are_refused_where_read() -> None:
    # AWS guide, "Passing data between states with variables", Variable scope: what the states of a
    # Map iteration or Parallel branch assign stays inside it.
    inner_only = machine(
        {
            "M": {
                "Type": "Map",
                "ItemProcessor": processor(("I", pass_state(Assign={"inner.$": "$"}))),
                "Next": "After",
            },
            "After": pass_state(Parameters={"i.$": "$inner"}),
        }
    )
    with pytest.raises(DefinitionError, match=r"States.After.Parameters: reads the variable \$inner"):
        validate(inner_only)
    never = machine({"First": pass_state(Next="Second", End=None), "Second": pass_state(Output="{% $x %}")})
    never["States"]["First"].pop("End")
    never["QueryLanguage"] = "JSONata"
    with pytest.raises(DefinitionError, match=r"States.Second.Output: reads the variable \$x"):
        validate(never)


def test_variable_size_limits_are_data_limit_exceeded() -> None:
    # Limits: 256 KiB per variable and per Assign, 10 MiB for an execution's variables.
    big = pass_state(Assign={"blob": "{% $pad('', 262145, 'x') %}"})
    result = run(jsonata({"P": big}), {})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
    assert "variable 'blob'" in result.cause


# --- Distributed Map -----------------------------------------------------------------------------
# AWS guide, "Using Map state in Distributed mode", "ItemReader (Map)", "ItemBatcher (Map)",
# "ResultWriter (Map)" and "Setting failure thresholds for Distributed Map states"
# (docs.aws.amazon.com/step-functions/latest/dg/state-map-distributed.html and its subpages).


class MemoryObjects:
    """An in-memory object store for the engine's ObjectStorage port."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})

    def get_object(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]

    def list_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "Key": key,
                "Size": len(body),
                "ETag": '"e"',
                "LastModified": 1700000000,
                "StorageClass": "STANDARD",
            }
            for (b, key), body in sorted(self.objects.items())
            if b == bucket and key.startswith(prefix)
        ]

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body

    def json(self, bucket: str, key: str) -> Any:
        import json

        return json.loads(self.objects[(bucket, key)])


def distributed(processor_states: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "Type": "Map",
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": next(iter(processor_states)),
            "States": processor_states,
        },
        "End": True,
        **fields,
    }


def run_with(objects: MemoryObjects, definition: dict[str, Any], data: Any = None, **handlers: Any) -> Any:
    engine = Engine(registry(handlers), VirtualClock(), objects=objects)
    return engine.run(definition, data, state_machine_name="Orders")


RATINGS = b"rating,movieId,userId\n3.5,307,1\n4,481,1\n5,1091,2\n"


@pytest.mark.parametrize(
    ("config", "body", "expected"),
    [
        # "CSV file with a header row": every value is a string, keyed by the header.
        (
            {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
            RATINGS,
            [
                {"rating": "3.5", "movieId": "307", "userId": "1"},
                {"rating": "4", "movieId": "481", "userId": "1"},
                {"rating": "5", "movieId": "1091", "userId": "2"},
            ],
        ),
        # "CSVHeaders given": the first row is data.
        (
            {"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a", "b"]},
            b"1,2\n3,4\n",
            [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}],
        ),
        ({"InputType": "JSON"}, b'[{"id": 1}, {"id": 2}]', [{"id": 1}, {"id": 2}]),
        ({"InputType": "JSONL"}, b'{"id": 1}\n{"id": 2}\n', [{"id": 1}, {"id": 2}]),
        ({"InputType": "JSON", "MaxItems": 1}, b"[1, 2, 3]", [1]),
    ],
)
def test_item_reader_from_an_object(config: dict[str, Any], body: bytes, expected: list[Any]) -> None:
    objects = MemoryObjects({("bucket", "data/in"): body})
    state = distributed(
        {"Echo": pass_state()},
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": config,
            "Parameters": {"Bucket": "bucket", "Key": "data/in"},
        },
    )
    result = run_with(objects, machine({"M": state}))
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == expected


def test_item_reader_list_objects_and_an_inventory_manifest() -> None:
    import gzip
    import json

    inventory = gzip.compress(b'"src","a.txt","5"\n"src","b.txt","7"\n')
    manifest = {
        "sourceBucket": "src",
        "destinationBucket": "arn:aws:s3:::inv",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size",
        "files": [{"key": "inventory/data/1.csv.gz", "size": 1, "MD5checksum": "x"}],
    }
    objects = MemoryObjects(
        {
            ("inv", "inventory/manifest.json"): json.dumps(manifest).encode(),
            ("inv", "inventory/data/1.csv.gz"): inventory,
            ("src", "logs/a.txt"): b"12345",
            ("src", "other/b.txt"): b"1",
        }
    )
    listing = distributed(
        {"Key": pass_state(OutputPath="$.Key")},
        ItemReader={
            "Resource": "arn:aws:states:::s3:listObjectsV2",
            "Parameters": {"Bucket": "src", "Prefix": "logs/"},
        },
    )
    assert run_with(objects, machine({"M": listing})).output == ["logs/a.txt"]
    first = run_with(
        objects,
        machine(
            {
                "M": distributed(
                    {"Item": pass_state()},
                    ItemReader={
                        "Resource": "arn:aws:states:::s3:listObjectsV2",
                        "Parameters": {"Bucket": "src", "Prefix": "logs/"},
                    },
                )
            }
        ),
    )
    assert first.output[0] == {
        "Etag": '"e"',
        "Key": "logs/a.txt",
        "LastModified": 1700000000,
        "Size": 5,
        "StorageClass": "STANDARD",
    }
    from_manifest = distributed(
        {"Row": pass_state()},
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "MANIFEST"},
            "Parameters": {"Bucket": "inv", "Key": "inventory/manifest.json"},
        },
    )
    assert run_with(objects, machine({"M": from_manifest})).output == [
        {"Bucket": "src", "Key": "a.txt", "Size": "5"},
        {"Bucket": "src", "Key": "b.txt", "Size": "7"},
    ]


def test_item_batcher_groups_items_with_batch_input() -> None:
    # "ItemBatcher": each child execution gets {"Items": [...], "BatchInput": {...}}.
    state = distributed(
        {"Sum": pass_state(Parameters={"n.$": "States.ArrayLength($.Items)", "tag.$": "$.BatchInput.tag"})},
        ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"tag.$": "$.tag"}},
        ItemsPath="$.items",
    )
    result = run_with(MemoryObjects(), machine({"M": state}), {"items": [1, 2, 3, 4, 5], "tag": "t"})
    assert result.output == [{"n": 2, "tag": "t"}, {"n": 2, "tag": "t"}, {"n": 1, "tag": "t"}]
    by_bytes = distributed(
        {"Count": pass_state(OutputPath="$.Items")}, ItemBatcher={"MaxInputBytesPerBatch": 40}
    )
    sized = run_with(MemoryObjects(), machine({"M": by_bytes}), ["aaaaaaaa", "bbbbbbbb", "cccccccc"])
    assert sized.output == [["aaaaaaaa", "bbbbbbbb"], ["cccccccc"]]  # {"Items":[...]} within 40 bytes


def test_child_executions_have_their_own_histories_and_the_parent_records_the_map_run() -> None:
    state = distributed({"Work": task("work")}, Label="Orders", ItemsPath="$.ids")
    result = run_with(MemoryObjects(), machine({"M": state}), {"ids": [1, 2]}, work=echo)
    assert result.output == [1, 2]
    parent_types = types(result)
    assert "MapRunStarted" in parent_types and "MapRunSucceeded" in parent_types
    assert "TaskScheduled" not in parent_types  # the children's events are theirs
    (map_run,) = result.map_runs
    assert ":mapRun:Orders/Orders:" in map_run.arn
    child = map_run.executions[0]
    assert ":execution:Orders/Orders:" in child.arn
    assert (child.history[0].type, child.history[-1].type) == ("ExecutionStarted", "ExecutionSucceeded")


def test_children_do_not_see_the_parent_variables() -> None:
    # Variables: "a Distributed Map's child workflow cannot read the parent's variables"; pass them in.
    definition = machine(
        {
            "Set": {"Type": "Pass", "Assign": {"rate": 2}, "Next": "M"},
            "M": distributed(
                {"Use": pass_state(Output="{% $states.input.value * $states.input.rate %}")},
                ItemSelector={"value": "{% $states.context.Map.Item.Value %}", "rate": "{% $rate %}"},
            ),
        },
        QueryLanguage="JSONata",
    )
    assert run_with(MemoryObjects(), definition, [1, 2]).output == [2, 4]
    reads_parent = machine(
        {
            "Set": {"Type": "Pass", "Assign": {"rate": 2}, "Next": "M"},
            "M": distributed({"Use": pass_state(Output="{% $rate %}")}),
        },
        QueryLanguage="JSONata",
    )
    with pytest.raises(DefinitionError, match=r"reads the variable \$rate"):
        validate(reads_parent)


def failing_on_two(good: dict[str, Any]) -> dict[str, Any]:
    """Child states that fail (Item.Bad) for the item 2 and run ``good`` for any other."""
    return {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Bad"}],
            "Default": "Good",
        },
        "Bad": {"Type": "Fail", "Error": "Item.Bad", "Cause": "two"},
        "Good": good,
    }


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({}, "FAILED"),
        ({"ToleratedFailureCount": 1}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 25}, "FAILED"),  # 1 of 3 is 33 %
        ({"ToleratedFailurePercentage": 34}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 33.4}, "SUCCEEDED"),  # a number, not only an integer
        ({"ToleratedFailurePercentage": 33.3}, "FAILED"),
        ({"ToleratedFailureCountPath": "$.allowed"}, "SUCCEEDED"),
    ],
)
def test_tolerated_failures(tolerance: dict[str, Any], status: str) -> None:
    # "Tolerated failure threshold for Distributed Map state": beyond the threshold the Map fails with
    # States.ExceedToleratedFailureThreshold.
    state = distributed(failing_on_two(pass_state()), ItemsPath="$.items", **tolerance)
    result = run_with(MemoryObjects(), machine({"M": state}), {"items": [1, 2, 3], "allowed": 1})
    assert result.status == status
    if status == "FAILED":
        assert result.error == "States.ExceedToleratedFailureThreshold"
        assert result.cause == "The specified tolerated failure threshold was exceeded"
        assert "MapRunFailed" in types(result)
    else:
        # Without a ResultWriter the output is COMPACT's, which keeps a failed execution's record whole
        # (AWS guide, "ResultWriter (Map)", Transformation).
        first, failed, last = result.output
        assert (first, last) == (1, 3)
        assert (failed["Status"], failed["Error"], failed["Cause"], failed["Input"]) == (
            "FAILED",
            "Item.Bad",
            "two",
            "2",
        )


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({"ToleratedFailureCount": 1}, "FAILED"),
        ({"ToleratedFailureCount": 2}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 49}, "FAILED"),
        ({"ToleratedFailurePercentage": 50}, "SUCCEEDED"),
    ],
)
def test_tolerated_failures_count_the_items_of_a_failed_batch(tolerance: dict[str, Any], status: str) -> None:
    # "Tolerated failure threshold": the thresholds are of failed items, out of all items; a failed
    # child execution of a batch fails each of its items (here one batch of 2 out of 4 items).
    fails_on_two = {
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.Items[0]", "NumericEquals": 1, "Next": "Bad"}],
            "Default": "Good",
        },
        "Bad": {"Type": "Fail", "Error": "Batch.Bad"},
        "Good": pass_state(),
    }
    state = distributed(fails_on_two, ItemBatcher={"MaxItemsPerBatch": 2}, **tolerance)
    result = run_with(MemoryObjects(), machine({"M": state}), [1, 2, 3, 4])
    assert result.status == status, result.cause
    if status == "FAILED":
        assert result.error == "States.ExceedToleratedFailureThreshold"


def test_result_writer_writes_the_manifest_and_result_files() -> None:
    # "ResultWriter": <Prefix>/<map run id>/manifest.json lists SUCCEEDED_n/FAILED_n/PENDING_n files;
    # the Map's output is {"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}.
    objects = MemoryObjects()
    state = distributed(
        failing_on_two(pass_state(Parameters={"doubled.$": "States.MathAdd($, $)"})),
        ToleratedFailureCount=1,
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "runs"},
        },
    )
    result = run_with(objects, machine({"M": state}), [1, 2, 3])
    assert result.status == "SUCCEEDED", result.cause
    details = result.output["ResultWriterDetails"]
    map_run_id = result.output["MapRunArn"].rsplit(":", 1)[1]
    assert details == {"Bucket": "out", "Key": f"runs/{map_run_id}/manifest.json"}
    manifest = objects.json("out", details["Key"])
    assert manifest["DestinationBucket"] == "out" and manifest["MapRunArn"] == result.output["MapRunArn"]
    assert [f["Key"] for f in manifest["ResultFiles"]["SUCCEEDED"]] == [f"runs/{map_run_id}/SUCCEEDED_0.json"]
    succeeded = objects.json("out", f"runs/{map_run_id}/SUCCEEDED_0.json")
    assert sorted(entry["Output"] for entry in succeeded) == ['{"doubled":2}', '{"doubled":6}']
    assert all(
        entry["Status"] == "SUCCEEDED" and entry["InputDetails"] == {"Included": True} for entry in succeeded
    )
    (failed,) = objects.json("out", f"runs/{map_run_id}/FAILED_0.json")
    assert (failed["Status"], failed["Error"], failed["Cause"], failed["Input"]) == (
        "FAILED",
        "Item.Bad",
        "two",
        "2",
    )


# AWS guide, "ResultWriter (Map)": WriterConfig's Transformation (NONE, COMPACT, FLATTEN) and
# OutputType (JSON, JSONL); a WriterConfig alone shapes the state's output, a Resource with its
# Parameters exports to S3, all three export what the WriterConfig shaped. The guide's example: each
# child returns an array of orders.
ORDERS = [{"customer_id": "145538", "order_id": "100000"}, {"customer_id": "898037", "order_id": "100001"}]


def orders_map(**fields: Any) -> dict[str, Any]:
    return distributed({"P": pass_state(Result=ORDERS)}, **fields)


@pytest.mark.parametrize(
    ("transformation", "expected"),
    [
        ("COMPACT", [ORDERS, ORDERS]),
        ("FLATTEN", ORDERS + ORDERS),
    ],
)
def test_writer_config_alone_shapes_the_state_output(transformation: str, expected: list[Any]) -> None:
    state = orders_map(
        ResultWriter={"WriterConfig": {"Transformation": transformation, "OutputType": "JSON"}}
    )
    result = run_with(MemoryObjects(), machine({"M": state}), [1, 2])
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == expected


def test_writer_config_none_keeps_the_execution_metadata() -> None:
    state = orders_map(ResultWriter={"WriterConfig": {"Transformation": "NONE", "OutputType": "JSON"}})
    result = run_with(MemoryObjects(), machine({"M": state}), [1, 2])
    assert result.status == "SUCCEEDED", result.cause
    first, second = result.output
    assert json_loads(first["Output"]) == ORDERS and first["Input"] == "1" and second["Input"] == "2"
    assert first["Status"] == "SUCCEEDED" and first["OutputDetails"] == {"Included": True}
    assert first["RedriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven"
    # A child's state machine is the parent's, named by the Map's label.
    assert first["StateMachineArn"].endswith(":stateMachine:Orders/M")
    assert first["ExecutionArn"].split(":")[-2:] == ["Orders/M", first["Name"]]


@pytest.mark.parametrize("item", ["ascii", "café", "del\x7f", {"k": ["é", 1.5, None]}])
def test_a_record_holds_input_and_output_as_escaped_compact_json(item: Any) -> None:
    state = distributed(
        {"P": pass_state()}, ResultWriter={"WriterConfig": {"Transformation": "NONE", "OutputType": "JSON"}}
    )
    result = run_with(MemoryObjects(), machine({"M": state}), [item])
    assert result.status == "SUCCEEDED", result.cause
    (record,) = result.output
    assert record["Input"] == record["Output"] == json_dumps(item, separators=(",", ":"))


def exported(objects: MemoryObjects, output: dict[str, Any], status: str = "SUCCEEDED") -> bytes:
    manifest = objects.json("out", output["ResultWriterDetails"]["Key"])
    (entry,) = manifest["ResultFiles"][status]
    assert entry["Key"].endswith(f"/{status}_0.json")  # .json whatever the OutputType
    return objects.objects[("out", entry["Key"])]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"Transformation": "COMPACT", "OutputType": "JSON"}, [ORDERS, ORDERS]),
        ({"Transformation": "FLATTEN", "OutputType": "JSON"}, ORDERS + ORDERS),
        ({"Transformation": "COMPACT", "OutputType": "JSONL"}, [ORDERS, ORDERS]),
        ({"Transformation": "FLATTEN", "OutputType": "JSONL"}, ORDERS + ORDERS),
    ],
)
def test_all_three_fields_export_what_writer_config_shaped(config: dict[str, str], expected: Any) -> None:
    objects = MemoryObjects()
    state = orders_map(
        ResultWriter={
            "WriterConfig": config,
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "csvProcessJobs"},
        }
    )
    result = run_with(objects, machine({"M": state}), [1, 2])
    assert result.status == "SUCCEEDED", result.cause
    assert set(result.output) == {"MapRunArn", "ResultWriterDetails"}
    body = exported(objects, result.output).decode()
    if config["OutputType"] == "JSONL":
        assert body.endswith("\n") and [json_loads(line) for line in body.splitlines()] == expected
    else:
        assert json_loads(body) == expected


def test_a_failed_map_run_still_exports_what_succeeded_failed_and_never_started() -> None:
    # "ResultWriter (Map)": PENDING_n.json holds the executions that never started because the Map Run
    # failed. One at a time, item 2 fails past the (default zero) threshold, so item 3 never starts.
    objects = MemoryObjects()
    state = distributed(
        failing_on_two(pass_state()),
        MaxConcurrency=1,
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "p"},
        },
    )
    result = run_with(objects, machine({"M": state}), [1, 2, 3])
    assert (result.status, result.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    (manifest_key,) = [key for _, key in objects.objects if key.endswith("manifest.json")]
    files = objects.json("out", manifest_key)["ResultFiles"]

    def inputs(status: str) -> list[str]:
        return [entry["Input"] for file in files[status] for entry in objects.json("out", file["Key"])]

    assert (inputs("SUCCEEDED"), inputs("FAILED"), inputs("PENDING")) == (["1"], ["2"], ["3"])
    (pending,) = objects.json("out", files["PENDING"][0]["Key"])
    assert pending["Status"] == "PENDING"


def test_exported_failures_keep_their_records_whatever_the_transformation() -> None:
    # "If a child workflow execution fails, Step Functions returns its execution result unchanged."
    objects = MemoryObjects()
    state = distributed(
        failing_on_two(pass_state(Result=["a", "b"])),
        ToleratedFailureCount=1,
        ResultWriter={
            "WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSONL"},
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out"},
        },
    )
    result = run_with(objects, machine({"M": state}), [1, 2, 3])
    assert result.status == "SUCCEEDED", result.cause
    assert exported(objects, result.output).decode().splitlines() == ['"a"', '"b"', '"a"', '"b"']
    (failed,) = [json_loads(line) for line in exported(objects, result.output, "FAILED").splitlines()]
    assert (failed["Status"], failed["Error"], failed["Input"]) == ("FAILED", "Item.Bad", "2")


@pytest.mark.parametrize(
    ("writer", "problem"),
    [
        ({}, "needs a WriterConfig, or a Resource with Parameters, or all three"),
        ({"Resource": "arn:aws:states:::s3:putObject"}, "Resource and Parameters go together"),
        ({"Parameters": {"Bucket": "b"}}, "Resource and Parameters go together"),
        (
            {"WriterConfig": {"Transformation": "FLATTEN"}, "Resource": "arn:aws:states:::s3:putObject"},
            "Resource and Parameters go together",
        ),
        (
            {"WriterConfig": {"Transformation": "SQUASH"}},
            "Transformation must be one of NONE, COMPACT, FLATTEN",
        ),
        ({"WriterConfig": {"OutputType": "CSV"}}, "OutputType must be one of JSON, JSONL"),
        ({"WriterConfig": {"Format": "JSON"}}, "WriterConfig: field 'Format' is not allowed here"),
        (
            {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b"}},
            "Resource must be arn:aws:states:::s3:putObject",
        ),
    ],
)
def test_result_writer_field_combinations_aws_refuses(writer: dict[str, Any], problem: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        validate(machine({"M": orders_map(ResultWriter=writer)}))
    assert any(
        found.startswith("States.M.ResultWriter") and problem in found for found in refused.value.problems
    ), refused.value.problems


def test_result_writer_is_only_for_a_distributed_map() -> None:
    inline = {
        "Type": "Map",
        "ItemProcessor": processor(("P", pass_state())),
        "ResultWriter": {"WriterConfig": {"Transformation": "COMPACT", "OutputType": "JSON"}},
        "End": True,
    }
    with pytest.raises(DefinitionError, match="ResultWriter is only allowed in a Map whose"):
        validate(machine({"M": inline}))


def test_distributed_map_fields_are_checked_at_creation() -> None:
    bad = distributed(
        {"P": pass_state()},
        Label="has space",
        MaxConcurrency=10_001,
        ToleratedFailurePercentage=101,
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "XML"},
            "Parameters": {},
        },
        ItemBatcher={"MaxInputBytesPerBatch": 300_000},
    )
    with pytest.raises(DefinitionError) as refused:
        validate(machine({"M": bad}))
    text = "\n".join(refused.value.problems)
    assert "Label must be 1 to 40 characters" in text
    assert "MaxConcurrency must be an integer from 0 to 10000" in text
    assert "ToleratedFailurePercentage must be a number from 0 to 100" in text
    assert "InputType must be one of CSV, JSON, JSONL, MANIFEST" in text
    assert "MaxInputBytesPerBatch must be an integer from 1 to 262144" in text


def test_a_distributed_item_processor_names_its_execution_type() -> None:
    # AWS guide, "ItemProcessor (Map)", ExecutionType: "You must provide this field if you specified
    # DISTRIBUTED for the Mode sub-field."
    state = distributed({"P": pass_state()})
    del state["ItemProcessor"]["ProcessorConfig"]["ExecutionType"]
    with pytest.raises(
        DefinitionError, match=r"ItemProcessor.ProcessorConfig: ExecutionType must be STANDARD"
    ):
        validate(machine({"M": state}))


def test_jsonata_items_cannot_be_used_with_an_item_reader() -> None:
    # AWS guide, "ItemReader (Map)": the items come from the reader; Items (JSONata) like ItemsPath
    # (JSONPath) selects them from the input instead.
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2", "Arguments": {"Bucket": "b"}}
    state = distributed({"P": pass_state()}, Items="{% $states.input.xs %}", ItemReader=reader)
    with pytest.raises(DefinitionError, match="States.M: Items cannot be used with ItemReader"):
        validate(machine({"M": state}, QueryLanguage="JSONata"))


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({"InputType": "PARQUET"}, "InputType PARQUET"),
        ({"InputType": "CSV", "ManifestType": "ATHENA_DATA"}, "ManifestType"),
    ],
)
def test_readers_the_local_engine_lacks_are_refused_by_name(config: dict[str, Any], refused: str) -> None:
    reader = {
        "Resource": "arn:aws:states:::s3:getObject",
        "ReaderConfig": config,
        "Parameters": {"Bucket": "b", "Key": "k"},
    }
    with pytest.raises(DefinitionError) as problems:
        validate(machine({"M": distributed({"P": pass_state()}, ItemReader=reader)}))
    assert problems.value.problems == [
        f"States.M.ItemReader.ReaderConfig: {refused} is not supported by the local engine (it reads CSV, "
        "JSON, JSON Lines and S3 inventory manifests of CSV files)"
    ]


def test_a_missing_object_is_item_reader_failed() -> None:
    state = distributed(
        {"P": pass_state()},
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSON"},
            "Parameters": {"Bucket": "b", "Key": "none"},
        },
    )
    result = run_with(MemoryObjects(), machine({"M": state}))
    assert result.error == "States.ItemReaderFailed"


# --- Limits checked at creation ------------------------------------------------------------------
# AWS guide, "Step Functions service quotas" and the Retry/Wait field references: each refusal
# names the field and its bounds.


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        (
            {"Type": "Wait", "Seconds": 100_000_000, "End": True},
            "States.S: Seconds must be an integer from 0 to 99999999, not 100000000",
        ),
        (
            task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 100_000_000}]),
            "States.S.Retry[0]: MaxAttempts must be an integer from 0 to 99999999, not 100000000",
        ),
        (
            task(Retry=[{"ErrorEquals": ["States.ALL"], "MaxDelaySeconds": 31_622_401}]),
            "States.S.Retry[0]: MaxDelaySeconds must be an integer from 1 to 31622400, not 31622401",
        ),
        (
            task(Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0}]),
            "States.S.Retry[0]: IntervalSeconds must be an integer from 1 to 99999999, not 0",
        ),
        (task(TimeoutSeconds=100_000_000), "States.S: TimeoutSeconds must be an integer from 1 to 99999999"),
    ],
)
def test_creation_time_limits_name_the_field_and_the_limit(state: dict[str, Any], problem: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        validate(machine({"S": state}))
    assert any(found.startswith(problem) for found in refused.value.problems), refused.value.problems


def nested_calls(depth: int) -> str:
    """``depth`` intrinsic functions, each inside the next."""
    return "States.MathAdd(" * (depth - 1) + "States.ArrayLength($.items)" + ", 1)" * (depth - 1)


def test_intrinsics_nest_up_to_ten_within_a_field() -> None:
    # AWS guide, "Intrinsic functions for JSONPath states": "You can nest up to 10 intrinsic functions
    # within a field in your workflows." Ten run; eleven are refused at creation, naming the field.
    ten = machine({"P": pass_state(Parameters={"n.$": nested_calls(10)})})
    assert run(ten, {"items": [1, 2]}).output == {"n": 11}
    eleven = machine({"P": pass_state(Parameters={"deep": {"n.$": nested_calls(11)}})})
    with pytest.raises(DefinitionError) as refused:
        validate(eleven)
    assert refused.value.problems == [
        "States.P.Parameters.deep.n.$: nests 11 intrinsic functions, one inside another; "
        "at most 10 can be nested within a field"
    ]


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (
            task(Catch=[{"ErrorEquals": ["States.ALL"], "Next": "T", "Assign": {"x.$": "States.Nope()"}}]),
            "Catch[0].Assign.x.$",
        ),
        (task(Assign={"x.$": nested_calls(11)}), "Assign.x.$"),
        (task(ResultSelector={"x.$": nested_calls(11)}), "ResultSelector.x.$"),
        (
            {
                "Type": "Choice",
                "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "T", "Assign": {"x.$": "$..["}}],
                "Default": "T",
            },
            "Choices[0].Assign.x.$",
        ),
        (
            distributed(
                {"P": pass_state()},
                ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"x.$": nested_calls(11)}},
            ),
            "ItemBatcher.BatchInput.x.$",
        ),
    ],
)
def test_every_jsonpath_template_is_checked_at_creation(state: dict[str, Any], field: str) -> None:
    # Catch and Choice rules' Assign and a Distributed Map's BatchInput are payload templates too.
    definition = machine(
        {"S": {**state, **({} if state["Type"] == "Choice" else {"End": True})}, "T": task()}
    )
    with pytest.raises(DefinitionError) as refused:
        validate(definition)
    assert any(found.startswith(f"States.S.{field}: ") for found in refused.value.problems), (
        refused.value.problems
    )


@pytest.mark.parametrize("expression", ["$uppercase", "function($x) { $x }", "$partition"])
def test_a_jsonata_value_that_is_not_json_is_a_query_evaluation_error(expression: str) -> None:
    # AWS guide, "Transforming data with JSONata": a field's value must be JSON; a function is not.
    definition = machine({"P": pass_state(Output="{% " + expression + " %}")}, QueryLanguage="JSONata")
    result = run(definition, {})
    assert (result.status, result.error) == ("FAILED", "States.QueryEvaluationError")
    assert "returned a value that is not JSON" in result.cause


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # JSONata reference behaviours (docs.jsonata.org) that state machines rely on.
        ("$states.input.orders.price", [10, 5]),  # a path maps over arrays
        ("$states.input.one.price", 3),  # a one-item sequence is its item
        ("$sum($states.input.orders.(price * qty))", 25),
        ("$states.input.orders[price > 6].name", "lamp"),
        ("$states.input.orders^(price).name", ["cup", "lamp"]),  # order-by
        ("$count($states.input.orders) > 1 ? 'many' : 'few'", "many"),
        ("$merge([{'a': 1}, {'b': 2}])", {"a": 1, "b": 2}),
        ("$keys($states.input.one[0])", ["name", "price"]),
        ("$lookup($states.input.one[0], 'name')", "pen"),
        ("$exists($states.input.nothing)", False),
        ("$join(['a', 'b'], '-') & $uppercase('c')", "a-bC"),
        ("$split('a,b,c', ',')", ["a", "b", "c"]),
        ("$states.input.orders{name: price}", {"lamp": 10, "cup": 5}),  # grouping into an object
        ("$map($states.input.orders, function($o) { $o.name })", ["lamp", "cup"]),
        ("($x := 2; $x * $x)", 4),
        ("$string(3.5) & '/' & $string(true)", "3.5/true"),
        ("$number('42') + 1", 43),
        ("$contains('cross-validation', 'valid')", True),
        ("$toMillis('1970-01-01T00:00:01.000Z')", 1000),
        ("[1, 2, 3][$ != 2]", [1, 3]),
    ],
)
def test_jsonata_reference_behaviours(expression: str, expected: Any) -> None:
    data = {
        "orders": [{"name": "lamp", "price": 10, "qty": 2}, {"name": "cup", "price": 5, "qty": 1}],
        "one": [{"name": "pen", "price": 3}],
    }
    definition = machine({"P": pass_state(Output="{% " + expression + " %}")}, QueryLanguage="JSONata")
    assert run(definition, data).output == expected


def test_a_jsonata_distributed_map_with_batches_and_a_result_writer() -> None:
    # The JSONata forms: ItemReader/ResultWriter take Arguments, ItemBatcher values may be expressions.
    objects = MemoryObjects({("in", "rows.jsonl"): b'{"v": 1}\n{"v": 2}\n{"v": 3}\n'})
    state = distributed(
        {"Sum": pass_state(Output="{% $sum($states.input.Items.v) + $states.input.BatchInput.offset %}")},
        ItemReader={
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Arguments": {"Bucket": "in", "Key": "{% $states.input.key %}"},
        },
        ItemBatcher={"MaxItemsPerBatch": "{% $states.input.size %}", "BatchInput": {"offset": 100}},
        ResultWriter={
            "Resource": "arn:aws:states:::s3:putObject",
            "Arguments": {"Bucket": "out", "Prefix": "sums"},
            "WriterConfig": {"OutputType": "JSONL"},
        },
        Output="{% $states.result.ResultWriterDetails.Key %}",
    )
    result = run_with(
        objects, machine({"M": state}, QueryLanguage="JSONata"), {"key": "rows.jsonl", "size": 2}
    )
    assert result.status == "SUCCEEDED", result.cause
    manifest = objects.json("out", result.output)
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    import json

    lines = objects.objects[("out", succeeded["Key"])].decode().splitlines()
    assert sorted(json.loads(json.loads(line)["Output"]) for line in lines) == [103, 103]


def test_nested_states_default_to_the_top_level_query_language() -> None:
    # A JSONata Map in a JSONPath machine: its ItemProcessor's states are JSONPath unless they say otherwise.
    state = {
        "Type": "Map",
        "QueryLanguage": "JSONata",
        "Items": "{% $states.input.xs %}",
        "ItemProcessor": processor(("Inner", pass_state(Parameters={"x.$": "$"}))),
        "End": True,
    }
    assert run(machine({"M": state}), {"xs": [1, 2]}).output == [{"x": 1}, {"x": 2}]


def test_seconds_path_beyond_the_limit_is_a_runtime_error() -> None:
    definition = machine({"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}})
    result = run(definition, {"s": 100_000_000})
    assert result.error == "States.Runtime"
    assert "SecondsPath '$.s' must select an integer from 0 to 99999999, not 100000000" in result.cause
