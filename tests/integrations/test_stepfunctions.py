"""Nested executions: states:startExecution, .sync and .sync:2.

AWS guide, "Start workflow executions from a task state" (docs.aws.amazon.com/step-functions/latest/
dg/connect-stepfunctions.html): .sync returns the child's DescribeExecution with Output as JSON text,
.sync:2 with Output as JSON; a child that does not succeed fails the task with States.TaskFailed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cvpipe.asl import Engine, TaskRegistry, VirtualClock
from cvpipe.integrations.stepfunctions import register_step_functions

pytestmark = pytest.mark.integration

CHILD = {
    "StartAt": "Double",
    "States": {
        "Double": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericLessThan": 0, "Next": "Refuse"}],
            "Default": "Compute",
        },
        "Compute": {"Type": "Pass", "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"}, "End": True},
        "Refuse": {"Type": "Fail", "Error": "Negative", "Cause": "n < 0"},
    },
}


def parent(resource_suffix: str) -> dict[str, Any]:
    return {
        "StartAt": "Child",
        "States": {
            "Child": {
                "Type": "Task",
                "Resource": f"arn:aws:states:::states:startExecution{resource_suffix}",
                "Parameters": {
                    "StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:Doubler",
                    "Input": {
                        "n.$": "$.n",
                        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
                    },
                },
                "End": True,
            }
        },
    }


def engine() -> Engine:
    registry = TaskRegistry()
    built = Engine(registry, VirtualClock())
    register_step_functions(registry, built, {"Doubler": CHILD})
    return built


def test_sync_2_returns_the_child_output_as_json() -> None:
    result = engine().run(parent(".sync:2"), {"n": 4})
    assert result.status == "SUCCEEDED", result.cause
    assert result.output["Status"] == "SUCCEEDED" and result.output["Output"] == {"doubled": 8}
    assert result.output["StateMachineArn"].endswith(":stateMachine:Doubler")


def test_sync_returns_output_as_text_and_a_failed_child_fails_the_task() -> None:
    ok = engine().run(parent(".sync"), {"n": 1})
    assert json.loads(ok.output["Output"]) == {"doubled": 2}
    failed = engine().run(parent(".sync:2"), {"n": -1})
    assert failed.error == "States.TaskFailed"
    cause = json.loads(failed.cause)
    assert (cause["Status"], cause["Error"], cause["Cause"]) == ("FAILED", "Negative", "n < 0")


def test_start_execution_without_sync_returns_at_once() -> None:
    result = engine().run(parent(""), {"n": 1})
    assert set(result.output) == {"ExecutionArn", "StartDate"}
    assert ":execution:Doubler:" in result.output["ExecutionArn"]


def test_an_unknown_state_machine() -> None:
    definition = parent(".sync:2")
    definition["States"]["Child"]["Parameters"]["StateMachineArn"] = (
        "arn:aws:states:us-east-1:000000000000:stateMachine:Nope"
    )
    result = engine().run(definition, {"n": 1})
    assert result.error == "StepFunctions.StateMachineDoesNotExistException" and "Doubler" in result.cause


def test_dates_are_epoch_milliseconds_and_json_text_is_compact() -> None:
    # The guide's .sync example: "StartDate": 1601675474046; "Input"/"Output" as the service writes
    # JSON text, without spaces.
    result = engine().run(parent(".sync"), {"n": 1})
    output = result.output
    assert isinstance(output["StartDate"], int) and isinstance(output["StopDate"], int)
    assert output["StartDate"] <= output["StopDate"]
    assert output["Output"] == '{"doubled":2}'
    assert output["Input"].startswith('{"n":1,')
    assert isinstance(engine().run(parent(""), {"n": 1}).output["StartDate"], int)


def named(name: str) -> dict[str, Any]:
    """A Map starting one child per item, one after another, all with the execution name ``name``."""
    start = parent(".sync:2")["States"]["Child"]
    start["Parameters"] = {**start["Parameters"], "Name": name, "Input": {"n.$": "$"}}
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "MaxConcurrency": 1,
                "ItemProcessor": {"StartAt": "Child", "States": {"Child": start}},
                "End": True,
            }
        },
    }


def test_an_execution_name_is_used_once() -> None:
    # StartExecution: a name already used in the state machine is ExecutionAlreadyExists, unless the
    # same input is sent again while that execution runs (the call is then idempotent).
    result = engine().run(named("nightly"), [1, 2])
    assert result.error == "StepFunctions.ExecutionAlreadyExistsException"
    assert ":execution:Doubler:nightly'" in result.cause


@pytest.mark.parametrize("name", ["with space", "a/b", "x" * 81, ""])
def test_an_invalid_execution_name_is_refused(name: str) -> None:
    result = engine().run(named(name), [1])
    assert result.error == "StepFunctions.InvalidNameException", result.cause
