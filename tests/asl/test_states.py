"""Each state type, its input/output processing, and the context object."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from cvpipe.asl import Engine, StatesError, VirtualClock

from .helpers import machine, registry, run

pytestmark = pytest.mark.unit


def test_pass_result_and_result_path_merge_into_the_raw_input() -> None:
    result = run(
        machine({"P": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.r", "End": True}}), {"a": 0}
    )
    assert (result.status, result.output) == ("SUCCEEDED", {"a": 0, "r": {"x": 1}})


def test_pass_parameters_read_input_context_and_intrinsics() -> None:
    parameters = {
        "first.$": "$.items[0]",
        "count.$": "States.ArrayLength($.items)",
        "state.$": "$$.State.Name",
        "literal": {"kept": True},
    }
    result = run(machine({"P": {"Type": "Pass", "Parameters": parameters, "End": True}}), {"items": [5, 6]})
    assert result.output == {"first": 5, "count": 2, "state": "P", "literal": {"kept": True}}


def test_a_definition_changed_after_a_run_runs_as_changed() -> None:
    parameters = {"value.$": "$.a", "literal": 1}
    definition = machine({"P": {"Type": "Pass", "Parameters": parameters, "End": True}})
    assert run(definition, {"a": 1, "b": 2}).output == {"value": 1, "literal": 1}
    parameters["value.$"], parameters["literal"] = "$.b", 2
    assert run(definition, {"a": 1, "b": 2}).output == {"value": 2, "literal": 2}


def test_input_path_null_gives_an_empty_object_and_output_path_selects() -> None:
    states = {
        "A": {"Type": "Pass", "InputPath": None, "ResultPath": "$.seen", "Next": "B"},
        "B": {"Type": "Pass", "OutputPath": "$.seen", "End": True},
    }
    assert run(machine(states), {"big": 1}).output == {}


def test_result_path_null_keeps_the_input() -> None:
    result = run(machine({"P": {"Type": "Pass", "Result": 1, "ResultPath": None, "End": True}}), {"a": 1})
    assert result.output == {"a": 1}


def test_choice_routes_and_keeps_its_input() -> None:
    states = {
        "C": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"},
                {
                    "And": [
                        {"Variable": "$.n", "IsPresent": True},
                        {"Not": {"Variable": "$.n", "NumericEquals": 0}},
                    ],
                    "Next": "Small",
                },
            ],
            "Default": "Zero",
            "OutputPath": "$.n",
        },
        "Big": {"Type": "Pass", "Result": "big", "End": True},
        "Small": {"Type": "Pass", "ResultPath": "$", "End": True},
        "Zero": {"Type": "Succeed"},
    }
    assert run(machine(states), {"n": 11}).output == "big"
    assert run(machine(states), {"n": 3}).output == 3
    assert run(machine(states), {"n": 0}).output == 0


def test_choice_without_match_or_default_fails() -> None:
    states = {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "End"}]},
        "End": {"Type": "Succeed"},
    }
    result = run(machine(states), {"n": 2})
    assert (result.status, result.error, result.output) == ("FAILED", "States.NoChoiceMatched", None)


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        ({"Seconds": 30}, 30),
        ({"SecondsPath": "$.delay"}, 12),
        ({"Timestamp": "2024-01-01T00:01:00Z"}, 60),
        ({"TimestampPath": "$.until"}, 90),
        ({"Timestamp": "2023-12-31T00:00:00Z"}, 0),
    ],
)
def test_wait_sleeps_on_the_clock(wait: dict, expected: float) -> None:
    clock = VirtualClock(datetime(2024, 1, 1, tzinfo=UTC))
    data = {"delay": 12, "until": "2024-01-01T00:01:30.000+00:00"}
    result = run(machine({"W": {"Type": "Wait", **wait, "End": True}}), data, clock=clock)
    assert result.output == data
    assert clock.slept == [expected]


def test_wait_seconds_path_must_be_a_non_negative_integer() -> None:
    result = run(machine({"W": {"Type": "Wait", "SecondsPath": "$.s", "End": True}}), {"s": "ten"})
    assert result.error == "States.Runtime"
    assert "SecondsPath" in result.cause


def test_succeed_applies_input_and_output_paths() -> None:
    state = {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}
    assert run(machine({"S": state}), {"a": {"b": 7}}).output == 7


def test_fail_reports_error_and_cause() -> None:
    result = run(machine({"F": {"Type": "Fail", "Error": "Bad", "Cause": "because"}}))
    assert (result.status, result.output, result.error, result.cause) == ("FAILED", None, "Bad", "because")


def test_fail_error_path_and_intrinsic_cause_path() -> None:
    state = {"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('item {} failed', $.item)"}
    result = run(machine({"F": state}), {"code": "E42", "item": 3})
    assert (result.error, result.cause) == ("E42", "item 3 failed")


def test_fail_without_error_or_cause() -> None:
    result = run(machine({"F": {"Type": "Fail"}}))
    assert (result.status, result.error, result.cause) == ("FAILED", None, None)


def test_task_processing_order_parameters_result_selector_result_path_output_path() -> None:
    seen = []

    def handler(request):
        seen.append(request.parameters)
        return {"value": request.parameters["n"] * 2, "noise": True}

    state = {
        "Type": "Task",
        "Resource": "double",
        "InputPath": "$.in",
        "Parameters": {"n.$": "$.n"},
        "ResultSelector": {"doubled.$": "$.value"},
        "ResultPath": "$.in.result",
        "OutputPath": "$.in",
        "End": True,
    }
    result = run(machine({"T": state}), {"in": {"n": 4}, "other": 1}, {"double": handler})
    assert seen == [{"n": 4}]
    assert result.output == {"n": 4, "result": {"doubled": 8}}


def test_task_gets_the_context_object() -> None:
    contexts = []
    state = {"Type": "Task", "Resource": "spy", "End": True}
    clock = VirtualClock(datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC))
    engine = Engine(registry({"spy": lambda request: contexts.append(request.context)}), clock)
    result = engine.run(machine({"Work": state}), {"a": 1}, name="exec-1", state_machine_name="Pipeline")
    context = contexts[0]
    arn = "arn:aws:states:us-east-1:000000000000:execution:Pipeline:exec-1"
    assert result.arn == arn and result.name == "exec-1"
    assert context["Execution"] == {
        "Id": arn,
        "Name": "exec-1",
        "Input": {"a": 1},
        "StartTime": "2024-05-06T07:08:09.123Z",
        "RoleArn": "arn:aws:iam::000000000000:role/PipelineRole",
        "RedriveCount": 0,
    }
    assert context["StateMachine"] == {
        "Id": "arn:aws:states:us-east-1:000000000000:stateMachine:Pipeline",
        "Name": "Pipeline",
    }
    assert context["State"] == {"Name": "Work", "EnteredTime": "2024-05-06T07:08:09.123Z", "RetryCount": 0}


def test_execution_name_defaults_to_a_uuid_and_input_to_an_empty_object() -> None:
    result = run(machine({"P": {"Type": "Pass", "End": True}}))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", result.name)
    assert result.output == {}


def test_task_exception_becomes_states_task_failed_and_states_error_keeps_its_name() -> None:
    def broken(request):
        raise ValueError("bad value")

    def refused(request):
        raise StatesError("Custom.Refused", "no")

    states = {"T": {"Type": "Task", "Resource": "broken", "End": True}}
    result = run(machine(states), handlers={"broken": broken})
    assert (result.error, result.cause) == ("States.TaskFailed", "ValueError: bad value")
    states = {"T": {"Type": "Task", "Resource": "refused", "End": True}}
    result = run(machine(states), handlers={"refused": refused})
    assert (result.error, result.cause) == ("Custom.Refused", "no")


def test_unknown_resource_is_a_runtime_error_naming_the_state() -> None:
    result = run(machine({"T": {"Type": "Task", "Resource": "nowhere", "End": True}}))
    assert result.error == "States.Runtime"
    assert "'T'" in result.cause and "nowhere" in result.cause


def test_path_failure_is_a_runtime_error_naming_the_state() -> None:
    result = run(machine({"P": {"Type": "Pass", "InputPath": "$.missing", "End": True}}), {})
    assert result.error == "States.Runtime"
    assert result.cause.startswith(
        "An error occurred while executing the state 'P' (entered at the event id #2)."
    )


def test_task_result_must_be_json() -> None:
    result = run(
        machine({"T": {"Type": "Task", "Resource": "r", "End": True}}), handlers={"r": lambda request: {1, 2}}
    )
    assert result.error == "States.Runtime"


def test_definition_may_be_json_text() -> None:
    assert run('{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": 3, "End": true}}}').output == 3


def test_data_limit_exceeded_fails_and_is_not_caught_by_states_all() -> None:
    states = {
        "Big": {
            "Type": "Pass",
            "Parameters": {"blob.$": "States.ArrayRange(1, 1000, 1)", "text": "x" * 300_000},
            "End": True,
        }
    }
    result = run(machine(states))
    assert result.error == "States.DataLimitExceeded"

    def huge(request):
        return "x" * 300_000

    catch_all = {
        "T": {
            "Type": "Task",
            "Resource": "huge",
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        },
        "Caught": {"Type": "Succeed"},
    }
    result = run(machine(catch_all), handlers={"huge": huge})
    assert (result.status, result.error) == ("FAILED", "States.DataLimitExceeded")
    named = {
        **catch_all,
        "T": {**catch_all["T"], "Catch": [{"ErrorEquals": ["States.DataLimitExceeded"], "Next": "Caught"}]},
    }
    assert run(machine(named), handlers={"huge": huge}).status == "SUCCEEDED"


def test_execution_input_too_large_fails() -> None:
    result = run(machine({"P": {"Type": "Pass", "End": True}}), {"x": "y" * 300_000})
    assert result.error == "States.DataLimitExceeded"
