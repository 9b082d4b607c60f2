"""Definition checks: every problem is reported, with the path to the state at fault."""

from __future__ import annotations

from typing import Any

import pytest

from cvpipe.asl import DefinitionError, Engine, StatesError, TaskRegistry, TaskRequest
from cvpipe.asl.validate import validate

from .helpers import machine, run

pytestmark = pytest.mark.unit


def problems(definition: Any) -> list[str]:
    with pytest.raises(DefinitionError) as raised:
        validate(definition)
    return raised.value.problems


def test_a_valid_definition_passes() -> None:
    definition = machine(
        {
            "Choose": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "Work"}],
                "Default": "Done",
            },
            "Work": {
                "Type": "Task",
                "Resource": "r",
                "Parameters": {
                    "a.$": "$.x",
                    "b.$": "States.Format('{}', $.x)",
                    "c": [{"d.$": "$$.Execution.Id"}],
                },
                "Retry": [
                    {
                        "ErrorEquals": ["X"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 0,
                        "BackoffRate": 1.5,
                        "MaxDelaySeconds": 9,
                        "JitterStrategy": "FULL",
                    }
                ],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}],
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
        TimeoutSeconds=60,
        Comment="ok",
    )
    validate(definition)
    result = run(definition, {"x": 7}, {"r": lambda request: request.parameters})
    assert result.status == "SUCCEEDED", result.cause
    assert (result.output["a"], result.output["b"]) == (7, "7")


def test_missing_start_at_and_states() -> None:
    assert problems({}) == ["States must be a non-empty object"]
    assert problems({"States": {"A": {"Type": "Succeed"}}}) == ["StartAt is required"]
    assert problems({"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}) == ["StartAt 'B' does not exist"]


def test_every_problem_is_listed_with_its_nested_path() -> None:
    definition = machine(
        {
            "EvaluateCandidates": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "TrainFold",
                    "States": {"TrainFold": {"Type": "Task", "Resource": "r", "Next": "X"}},
                },
                "Next": "Missing",
            },
            "Orphan": {"Type": "Pass"},
        }
    )
    assert problems(definition) == [
        "States.EvaluateCandidates: Next 'Missing' does not exist",
        "States.EvaluateCandidates.ItemProcessor.States.TrainFold: Next 'X' does not exist",
        "States.Orphan: has neither Next nor End",
        "States.Orphan: unreachable from StartAt 'EvaluateCandidates'",
    ]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Type": "Nope", "End": True}, "States.S: unknown Type 'Nope'"),
        (
            {"Type": "Pass", "ResultSelector": {}, "End": True},
            "States.S: field 'ResultSelector' is not allowed here",
        ),
        ({"Type": "Succeed", "Next": "S"}, "States.S: field 'Next' is not allowed here"),
        ({"Type": "Pass", "Next": "S", "End": True}, "States.S: has both Next and End"),
        ({"Type": "Pass", "End": False}, "States.S: End must be true"),
        ({"Type": "Pass", "InputPath": "x", "End": True}, "States.S.InputPath: invalid path 'x'"),
        (
            {"Type": "Pass", "ResultPath": "$.a[*]", "End": True},
            "States.S.ResultPath: '$.a[*]' is not a Reference Path",
        ),
        (
            {"Type": "Pass", "ResultPath": "$$.a", "End": True},
            "States.S.ResultPath: '$$.a' cannot write into the context object",
        ),
        ({"Type": "Pass", "Parameters": {"a.$": "States.Nope("}, "End": True}, "States.S.Parameters.a.$:"),
        (
            {"Type": "Pass", "Parameters": {"a": {"b.$": "oops"}}, "End": True},
            "States.S.Parameters.a.b.$: invalid path 'oops'",
        ),
        ({"Type": "Task", "End": True}, "States.S: Resource is required"),
        (
            {"Type": "Task", "Resource": "r", "TimeoutSeconds": 0, "End": True},
            "States.S: TimeoutSeconds must be an integer from 1 to 99999999, not 0",
        ),
        (
            {"Type": "Task", "Resource": "r", "TimeoutSeconds": 5, "HeartbeatSeconds": 5, "End": True},
            "States.S: HeartbeatSeconds must be smaller",
        ),
        (
            {"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": True},
            "States.S: exactly one of Seconds, Timestamp",
        ),
        (
            {"Type": "Wait", "Timestamp": "2024-01-01 00:00:00", "End": True},
            "States.S: Timestamp '2024-01-01 00:00:00' is not an RFC 3339",
        ),
        ({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}, "States.S: has both Error and ErrorPath"),
        ({"Type": "Fail", "CausePath": "States.Format("}, "States.S.CausePath:"),
        ({"Type": "Choice", "Choices": []}, "States.S: Choices must be a non-empty array"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "S"}]}, "States.S.Choices[0]:"),
        (
            {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "Z"}]},
            "States.S.Choices[0]: Next 'Z' does not exist",
        ),
        ({"Type": "Parallel", "Branches": [], "End": True}, "States.S: Branches must be a non-empty array"),
        ({"Type": "Map", "End": True}, "States.S: exactly one of ItemProcessor or Iterator is required"),
        (
            {
                "Type": "Map",
                "MaxConcurrency": -1,
                "Iterator": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                "End": True,
            },
            "States.S: MaxConcurrency must be",
        ),
        (
            {"Type": "Pass", "QueryLanguage": "JSONata", "InputPath": "$.a", "End": True},
            "States.S: field 'InputPath' is JSONPath-only",
        ),
        (
            {"Type": "Pass", "Arguments": {}, "End": True},
            "States.S: field 'Arguments' is JSONata-only",
        ),
        (
            {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input. %}", "End": True},
            "States.S.Output: the JSONata expression '$states.input.' does not parse",
        ),
        (
            {"Type": "Pass", "QueryLanguage": "JSONata", "Output": {"a.$": "$.b"}, "End": True},
            "States.S.Output: field names ending in '.$' are JSONPath",
        ),
        (
            {"Type": "Pass", "Assign": {"1x": 1}, "End": True},
            "States.S.Assign: '1x' is not a variable name",
        ),
        (
            {"Type": "Pass", "Assign": {"states": 1}, "End": True},
            "States.S.Assign: 'states' is reserved",
        ),
        (
            {"Type": "Wait", "Seconds": 100_000_000, "End": True},
            "States.S: Seconds must be an integer from 0 to 99999999, not 100000000",
        ),
        (
            {
                "Type": "Map",
                "ItemReader": {},
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                "End": True,
            },
            "States.S: ItemReader is only allowed in a Map whose ItemProcessor.ProcessorConfig.Mode is DISTRIBUTED",
        ),
        (
            {
                "Type": "Map",
                "ToleratedFailurePercentage": 5,
                "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}},
                "End": True,
            },
            "States.S: ToleratedFailurePercentage is only allowed in a Map whose",
        ),
        (
            {
                "Type": "Map",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "I",
                    "States": {"I": {"Type": "Succeed"}},
                },
                "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b"}},
                "End": True,
            },
            "States.S.ItemReader.ReaderConfig: InputType must be one of CSV, JSON, JSONL, MANIFEST",
        ),
        (
            {"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": ["States.ALL", "X"]}], "End": True},
            "States.S.Retry[0]: States.ALL must appear alone",
        ),
        (
            {
                "Type": "Task",
                "Resource": "r",
                "Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
                "End": True,
            },
            "States.S.Retry[0]: States.ALL must appear alone, in the last Retrier",
        ),
        (
            {"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": []}], "End": True},
            "States.S.Retry[0]: ErrorEquals must be a non-empty array",
        ),
        (
            {
                "Type": "Task",
                "Resource": "r",
                "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}],
                "End": True,
            },
            "States.S.Retry[0]: BackoffRate must be a number >= 1.0",
        ),
        (
            {
                "Type": "Task",
                "Resource": "r",
                "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "HALF"}],
                "End": True,
            },
            "States.S.Retry[0]: JitterStrategy must be FULL or NONE",
        ),
        (
            {"Type": "Task", "Resource": "r", "Retry": [{"ErrorEquals": ["X"], "Next": "S"}], "End": True},
            "States.S.Retry[0]: field 'Next' is not allowed in a Retrier",
        ),
        (
            {"Type": "Task", "Resource": "r", "Catch": [{"ErrorEquals": ["X"]}], "End": True},
            "States.S.Catch[0]: Next is required",
        ),
        (
            {"Type": "Task", "Resource": "r", "Catch": [{"ErrorEquals": ["X"], "Next": "Q"}], "End": True},
            "States.S.Catch[0]: Next 'Q' does not exist",
        ),
        (
            {
                "Type": "Task",
                "Resource": "r",
                "Catch": [{"ErrorEquals": ["X"], "Next": "S", "ResultPath": "nope"}],
                "End": True,
            },
            "States.S.Catch[0].ResultPath:",
        ),
    ],
)
def test_state_problems(state: dict, expected: str) -> None:
    found = problems(machine({"S": state}))
    assert any(problem.startswith(expected) for problem in found), found


def test_catch_targets_count_as_reachable() -> None:
    definition = machine(
        {
            "T": {
                "Type": "Task",
                "Resource": "r",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}],
                "End": True,
            },
            "Recover": {"Type": "Succeed"},
        }
    )
    validate(definition)

    def fail(request: TaskRequest) -> None:
        raise StatesError("Boom", "caught")

    assert run(definition, {}, {"r": fail}).status == "SUCCEEDED"  # only through Recover


def test_parallel_branches_are_validated_recursively_and_names_must_be_unique() -> None:
    branch = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Gone"}}}
    found = problems(machine({"P": {"Type": "Parallel", "Branches": [branch, branch], "End": True}}))
    assert "States.P.Branches[0].States.A: Next 'Gone' does not exist" in found
    duplicate = "States.P.Branches[1].States.A: the name is already used by States.P.Branches[0].States.A"
    assert f"{duplicate}; state names must be unique" in found


def test_top_level_fields() -> None:
    found = problems(machine({"S": {"Type": "Succeed"}}, TimeoutSeconds=0, Extra=1))
    assert found == [
        "field 'Extra' is not allowed here",
        "TimeoutSeconds must be an integer from 1 to 31536000, not 0",
    ]


def test_engine_validates_before_running() -> None:
    with pytest.raises(DefinitionError) as raised:
        Engine(TaskRegistry()).run(machine({"S": {"Type": "Pass"}}))
    assert raised.value.problems == ["States.S: has neither Next nor End"]
    with pytest.raises(DefinitionError, match="not JSON"):
        Engine(TaskRegistry()).run("{not json")


def test_an_expression_that_does_not_parse_is_named_where_it_is() -> None:
    state = {"Type": "Pass", "Output": {"order": {"total": "{% $sum( %}"}, "tags": ["{% ) %}"]}, "End": True}
    found = problems(machine({"S": state}, QueryLanguage="JSONata"))
    assert [problem.split(":")[0] for problem in found] == [
        "States.S.Output.order.total",
        "States.S.Output.tags[0]",
    ]
