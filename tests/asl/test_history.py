"""The execution history: AWS event types and detail shapes, ids, chaining, live streaming."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from cvpipe.asl import Engine, Event, StatesError, VirtualClock

from .helpers import machine, registry, run, types

pytestmark = pytest.mark.unit


def test_task_execution_history_sequence_and_shapes() -> None:
    streamed: list[Event] = []
    states = {
        "Prepare": {"Type": "Pass", "Result": {"n": 1}, "Next": "Invoke"},
        "Invoke": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "fn", "Payload.$": "$"},
            "TimeoutSeconds": 30,
            "End": True,
        },
    }
    engine = Engine(
        registry({"arn:aws:states:::lambda:invoke": lambda request: {"Payload": 2}}), VirtualClock()
    )
    result = engine.run(machine(states), {"in": 0}, on_event=streamed.append)
    assert types(result) == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
        "ExecutionSucceeded",
    ]
    assert streamed == result.history
    assert [event.id for event in result.history] == list(range(1, 10))
    # As in AWS, the first state's event names no previous event: ExecutionStarted is not part of the chain.
    assert [event.previous_event_id for event in result.history] == [0, 0, *range(2, 9)]
    events = [event.to_json() for event in result.history]
    assert events[0]["executionStartedEventDetails"]["input"] == '{"in":0}'
    assert events[1]["stateEnteredEventDetails"] == {
        "name": "Prepare",
        "input": '{"in":0}',
        "inputDetails": {"truncated": False},
    }
    assert events[2]["stateExitedEventDetails"]["output"] == '{"n":1}'
    assert events[4]["taskScheduledEventDetails"] == {
        "resourceType": "lambda",
        "resource": "invoke",
        "region": "us-east-1",
        "parameters": '{"FunctionName":"fn","Payload":{"n":1}}',
        "timeoutInSeconds": 30,
    }
    assert events[5]["taskStartedEventDetails"] == {"resourceType": "lambda", "resource": "invoke"}
    assert json.loads(events[6]["taskSucceededEventDetails"]["output"]) == {"Payload": 2}
    assert events[8]["executionSucceededEventDetails"]["output"] == '{"Payload":2}'
    assert events[0]["timestamp"] == "2024-01-01T00:00:00.000Z"
    json.dumps(events)  # every event is JSON


def test_failure_and_retry_events() -> None:
    attempts = []

    def flaky(request: Any) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise StatesError("Oops", "first")
        return "ok"

    states = {
        "T": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
            "Retry": [{"ErrorEquals": ["Oops"]}],
            "End": True,
        }
    }
    result = run(machine(states), handlers={"arn:aws:states:::aws-sdk:s3:putObject": flaky})
    assert types(result)[2:8] == [
        "TaskScheduled",
        "TaskStarted",
        "TaskFailed",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
    ]
    failed = result.history[4].to_json()["taskFailedEventDetails"]
    assert failed == {
        "resourceType": "aws-sdk:s3",
        "resource": "putObject",
        "error": "Oops",
        "cause": "first",
    }


def test_execution_failed_details() -> None:
    result = run(machine({"F": {"Type": "Fail", "Error": "E", "Cause": "C"}}))
    assert types(result) == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    assert result.history[-1].to_json()["executionFailedEventDetails"] == {"error": "E", "cause": "C"}


def test_state_exited_reports_the_variables_the_state_assigned() -> None:
    """GetExecutionHistory's StateExitedEventDetails carry ``assignedVariables`` (name -> the value as
    JSON text) and ``assignedVariablesDetails``; a state that assigns nothing reports none."""
    result = run(
        machine(
            {
                "A": {"Type": "Pass", "Assign": {"x": {"a": [1, "b"]}, "y.$": "$.n"}, "Next": "B"},
                "B": {"Type": "Pass", "Parameters": {"x.$": "$x"}, "End": True},
            }
        ),
        {"n": 2},
    )
    exited = [event.details for event in result.history if event.type == "PassStateExited"]
    assert exited[0]["assignedVariables"] == {"x": '{"a":[1,"b"]}', "y": "2"}
    assert exited[0]["assignedVariablesDetails"] == {"truncated": False}
    assert "assignedVariables" not in exited[1]
    assert result.output == {"x": {"a": [1, "b"]}}


def test_map_events_chain_per_iteration() -> None:
    processor = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    result = run(
        machine({"M": {"Type": "Map", "MaxConcurrency": 1, "ItemProcessor": processor, "End": True}}),
        ["a", "b"],
    )
    by_type = {}
    for event in result.history:
        by_type.setdefault(event.type, []).append(event)
    started = by_type["MapStateStarted"][0]
    assert started.details == {"length": 2}
    iterations = by_type["MapIterationStarted"]
    assert [event.details for event in iterations] == [{"name": "M", "index": 0}, {"name": "M", "index": 1}]
    assert all(event.previous_event_id == started.id for event in iterations)
    assert by_type["MapIterationSucceeded"][1].details == {"name": "M", "index": 1}
    last_iteration_event = by_type["MapIterationSucceeded"][-1]
    assert by_type["MapStateSucceeded"][0].previous_event_id == last_iteration_event.id
    assert types(result)[-3:] == ["MapStateSucceeded", "MapStateExited", "ExecutionSucceeded"]


def test_parallel_events() -> None:
    branches = [{"StartAt": name, "States": {name: {"Type": "Pass", "End": True}}} for name in ("A", "B")]
    result = run(machine({"P": {"Type": "Parallel", "Branches": branches, "End": True}}))
    event_types = types(result)
    assert event_types[:3] == ["ExecutionStarted", "ParallelStateEntered", "ParallelStateStarted"]
    assert event_types[-3:] == ["ParallelStateSucceeded", "ParallelStateExited", "ExecutionSucceeded"]
    assert event_types.count("PassStateEntered") == 2


def test_integrations_add_their_own_events() -> None:
    def submits(request: Any) -> Any:
        request.emit(
            "TaskSubmitted",
            {"resourceType": "sagemaker", "resource": "createTrainingJob.sync", "output": "{}"},
        )
        return {}

    states = {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync", "End": True}
    }
    result = run(machine(states), handlers={"arn:aws:states:::sagemaker:createTrainingJob.sync": submits})
    submitted = result.history[types(result).index("TaskSubmitted")]
    assert submitted.to_json()["taskSubmittedEventDetails"]["resource"] == "createTrainingJob.sync"


def test_events_are_appended_safely_from_many_threads() -> None:
    seen_ids: list[int] = []
    lock = threading.Lock()

    def listen(event: Event) -> None:
        with lock:
            seen_ids.append(event.id)

    processor = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Next": "Q"}, "Q": {"Type": "Pass", "End": True}},
    }
    engine = Engine(registry(), VirtualClock())
    result = engine.run(
        machine({"M": {"Type": "Map", "ItemProcessor": processor, "End": True}}),
        list(range(30)),
        on_event=listen,
    )
    assert result.status == "SUCCEEDED"
    assert seen_ids == list(range(1, len(result.history) + 1))


def test_a_failing_listener_does_not_stop_the_execution(caplog: pytest.LogCaptureFixture) -> None:
    def broken_listener(event: Event) -> None:
        raise RuntimeError("listener bug")

    engine = Engine(registry(), VirtualClock())
    result = engine.run(machine({"P": {"Type": "Pass", "End": True}}), on_event=broken_listener)
    assert result.status == "SUCCEEDED"
    assert "the on_event listener failed" in caplog.text


def test_an_execution_whose_history_would_pass_its_limit_fails_with_states_runtime() -> None:
    """As Step Functions fails an execution at 25,000 events: no Catch handles it, and the last
    place is kept for ExecutionFailed."""
    definition = machine(
        {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"StartAt": "Step", "States": {"Step": {"Type": "Pass", "End": True}}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        }
    )
    engine = Engine(registry({}), VirtualClock(), max_history_events=60)

    small = engine.run(definition, {"items": list(range(5))})
    large = engine.run(definition, {"items": list(range(30))})

    assert small.status == "SUCCEEDED"
    assert (large.status, large.error) == ("FAILED", "States.Runtime")
    assert "history reached its limit of 60 events" in large.cause
    assert len(large.history) == 60 and large.history[-1].type == "ExecutionFailed"
    assert Engine(registry({})).max_history_events == 25_000
