"""The same definitions and inputs on the local engine and on moto's executing interpreter.

moto (a port of LocalStack's interpreter) is an independent implementation of the JSONPath flavour
of ASL; agreeing with it on status, output and error guards against misreadings of the spec.
Only definitions without Task states run here (moto runs Lambda functions in Docker).

Where moto is known to be wrong, the case is skipped with the reason in KNOWN_MOTO_DIFFERENCES.
The cases' outputs are objects or arrays: moto's DescribeExecution returns a string output unquoted
(``x`` rather than ``"x"``), which is moto's serialisation, not a semantic difference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cvpipe.asl import Engine, TaskRegistry, VirtualClock

pytestmark = pytest.mark.integration

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
pytest.importorskip("antlr4", reason="moto's ASL parser needs antlr4-python3-runtime (moto[stepfunctions])")

EXECUTION = "differential"


def only(state: dict[str, Any], name: str = "S") -> dict[str, Any]:
    return {"StartAt": name, "States": {name: state}}


def pass_state(**fields: Any) -> dict[str, Any]:
    return {"Type": "Pass", "End": True, **fields}


ITEM_PROCESSOR = {
    "StartAt": "Item",
    "States": {"Item": {"Type": "Pass", "Parameters": {"v.$": "$.value", "i.$": "$.index"}, "End": True}},
}

CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "pass_result_path": (
        only(pass_state(Result={"r": [1, 2]}, ResultPath="$.deep.new.key")),
        {"deep": {"old": 1}},
    ),
    "pass_result_path_null": (only(pass_state(Result=1, ResultPath=None)), {"a": 1}),
    "pass_input_output_path": (
        only(pass_state(InputPath="$.a", OutputPath="$.b")),
        {"a": {"b": [1, {"c": None}]}},
    ),
    "pass_input_path_null": (only(pass_state(InputPath=None)), {"a": 1}),
    "pass_parameters_context": (
        only(
            pass_state(
                Parameters={
                    "name.$": "$$.Execution.Name",
                    "state.$": "$$.State.Name",
                    "input.$": "$$.Execution.Input",
                    "k": [1, {"x.$": "$.x"}],
                }
            )
        ),
        {"x": "y"},
    ),
    "pass_definite_nested_index": (only(pass_state(Parameters={"b.$": "$.a[0].b"})), {"a": [{"b": 1}]}),
    "pass_indefinite_paths": (
        only(
            pass_state(
                Parameters={
                    "all.$": "$.items[*].id",
                    "filtered.$": "$.items[?(@.n > 1)].id",
                    "slice.$": "$.items[1:]",
                }
            )
        ),
        {"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "c", "n": 3}]},
    ),
    "intrinsics_strings": (
        only(
            pass_state(
                Parameters={
                    "format.$": "States.Format('{} has {} items', $.name, $.count)",
                    "split.$": "States.StringSplit($.csv, ',')",
                    "json.$": "States.StringToJson($.text)",
                    "text.$": "States.JsonToString($.obj)",
                    "b64.$": "States.Base64Encode($.name)",
                    "decoded.$": "States.Base64Decode('aGVsbG8=')",
                    "hash.$": "States.Hash($.name, 'SHA-256')",
                }
            )
        ),
        {
            "name": "cv",
            "count": 3,
            "csv": "a,b,c",
            "text": '{"k": [1, 2]}',
            "obj": {"z": 1, "a": [True, None]},
        },
    ),
    "intrinsics_arrays_and_math": (
        only(
            pass_state(
                Parameters={
                    "array.$": "States.Array($.a, 'x', 3)",
                    "partition.$": "States.ArrayPartition($.nums, 2)",
                    "contains.$": "States.ArrayContains($.nums, 3)",
                    "range.$": "States.ArrayRange(1, 9, 2)",
                    "item.$": "States.ArrayGetItem($.nums, 1)",
                    "length.$": "States.ArrayLength($.nums)",
                    "unique.$": "States.ArrayUnique($.dups)",
                    "sum.$": "States.MathAdd($.a, -3)",
                    "merged.$": "States.JsonMerge($.left, $.right, false)",
                }
            )
        ),
        {
            "a": 10,
            "nums": [1, 2, 3, 4, 5],
            "dups": [1, 1, 2, 1],
            "left": {"a": 1, "b": {"c": 1}},
            "right": {"b": {"d": 2}},
        },
    ),
    "choice_operators": (
        {
            "StartAt": "C",
            "States": {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.s", "StringMatches": "log-*.txt", "Next": "Matched"},
                        {
                            "And": [
                                {"Variable": "$.n", "NumericGreaterThanEqualsPath": "$.limit"},
                                {
                                    "Or": [
                                        {"Variable": "$.flag", "BooleanEquals": True},
                                        {"Not": {"Variable": "$.missing", "IsPresent": True}},
                                    ]
                                },
                                {"Variable": "$.t", "TimestampLessThan": "2030-01-01T00:00:00Z"},
                            ],
                            "Next": "Combined",
                        },
                    ],
                    "Default": "Default",
                },
                "Matched": pass_state(Result={"branch": "matched"}),
                "Combined": pass_state(Result={"branch": "combined"}),
                "Default": pass_state(Result={"branch": "default"}),
            },
        },
        {"s": "data.csv", "n": 5, "limit": 5, "flag": False, "t": "2024-06-01T12:00:00Z"},
    ),
    "choice_type_tests_and_default": (
        {
            "StartAt": "C",
            "States": {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.v", "IsNumeric": True, "Next": "Number"},
                        {"Variable": "$.v", "IsNull": True, "Next": "Null"},
                    ],
                    "Default": "Other",
                },
                "Number": pass_state(Result={"type": "number"}),
                "Null": pass_state(Result={"type": "null"}),
                "Other": {"Type": "Succeed"},
            },
        },
        {"v": "text"},
    ),
    "choice_no_match": (
        {
            "StartAt": "C",
            "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "E"}]},
                "E": {"Type": "Succeed"},
            },
        },
        {"n": 2},
    ),
    "map_item_selector": (
        only(
            {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemSelector": {
                    "value.$": "$$.Map.Item.Value",
                    "index.$": "$$.Map.Item.Index",
                    "shared.$": "$.shared",
                },
                "ItemProcessor": ITEM_PROCESSOR,
                "ResultPath": "$.results",
                "End": True,
            }
        ),
        {"items": ["a", "b", "c"], "shared": 1},
    ),
    "map_legacy_iterator_parameters": (
        only(
            {
                "Type": "Map",
                "MaxConcurrency": 1,
                "Parameters": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
                "Iterator": ITEM_PROCESSOR,
                "ResultSelector": {"n.$": "States.ArrayLength($)", "first.$": "$[0]"},
                "End": True,
            }
        ),
        [{"k": 1}, {"k": 2}],
    ),
    "map_item_context_inside_iterations": (
        only(
            {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Tag",
                    "States": {
                        "Tag": pass_state(Parameters={"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"})
                    },
                },
                "End": True,
            }
        ),
        [{"a": 1}, {"a": 2}],
    ),
    "map_of_raw_items_with_nested_map": (
        only(
            {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Inner",
                    "States": {
                        "Inner": {
                            "Type": "Map",
                            "ItemsPath": "$.xs",
                            "ItemProcessor": {"StartAt": "Leaf", "States": {"Leaf": pass_state()}},
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        ),
        [{"xs": [1, 2]}, {"xs": []}],
    ),
    "map_failing_item": (
        only(
            {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Check",
                    "States": {
                        "Check": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Reject"}],
                            "Default": "Accept",
                        },
                        "Reject": {"Type": "Fail", "Error": "Item.Rejected", "Cause": "two"},
                        "Accept": pass_state(),
                    },
                },
                "End": True,
            }
        ),
        [1, 2, 3],
    ),
    "parallel_result_selector": (
        only(
            {
                "Type": "Parallel",
                "Parameters": {"base.$": "$.base"},
                "Branches": [
                    {
                        "StartAt": "One",
                        "States": {"One": pass_state(Parameters={"v.$": "States.MathAdd($.base, 1)"})},
                    },
                    {
                        "StartAt": "Two",
                        "States": {
                            "Two": {"Type": "Wait", "Seconds": 0, "Next": "Three"},
                            "Three": pass_state(Result=[3]),
                        },
                    },
                ],
                "ResultSelector": {"first.$": "$[0]", "second.$": "$[1]"},
                "ResultPath": "$.parallel",
                "End": True,
            }
        ),
        {"base": 41},
    ),
    "parallel_failing_branch": (
        only(
            {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Ok", "States": {"Ok": pass_state()}},
                    {
                        "StartAt": "Bad",
                        "States": {"Bad": {"Type": "Fail", "Error": "Branch.Failed", "Cause": "bad branch"}},
                    },
                ],
                "End": True,
            }
        ),
        {},
    ),
    "parallel_catch": (
        {
            "StartAt": "P",
            "States": {
                "P": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Bad",
                            "States": {"Bad": {"Type": "Fail", "Error": "Branch.Failed", "Cause": "why"}},
                        }
                    ],
                    "Catch": [
                        {"ErrorEquals": ["Branch.Failed"], "ResultPath": "$.error", "Next": "Recovered"}
                    ],
                    "Next": "Recovered",
                },
                "Recovered": {"Type": "Succeed"},
            },
        },
        {"kept": True},
    ),
    "fail_error_path_intrinsic": (
        only({"Type": "Fail", "ErrorPath": "$.code", "CausePath": "States.Format('failed at {}', $.step)"}),
        {"code": "Custom.Error", "step": 3},
    ),
    "succeed_output_path": (
        only({"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"}),
        {"a": {"b": {"c": 1}}},
    ),
    "wait_zero_then_pass": (
        {
            "StartAt": "W",
            "States": {
                "W": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "P"},
                "P": pass_state(ResultPath="$.copy"),
            },
        },
        {"wait": 0},
    ),
    "map_input_path_and_result_path": (
        only(
            {
                "Type": "Map",
                "InputPath": "$.job",
                "ItemsPath": "$.folds",
                "ItemSelector": {"fold.$": "$$.Map.Item.Value", "k.$": "$.k"},
                "ItemProcessor": {
                    "StartAt": "Train",
                    "States": {"Train": pass_state(ResultPath="$.trained", Result=True)},
                },
                "ResultPath": "$.job.results",
                "OutputPath": "$.job",
                "End": True,
            }
        ),
        {"job": {"folds": [0, 1], "k": 2}, "other": "dropped"},
    ),
    "fail_without_cause": (only({"Type": "Fail", "Error": "Only.Error"}), {}),
    "wait_timestamp_in_the_past": (
        {
            "StartAt": "W",
            "States": {"W": {"Type": "Wait", "TimestampPath": "$.at", "Next": "P"}, "P": pass_state()},
        },
        {"at": "2001-02-03T04:05:06Z"},
    ),
    "missing_path_is_runtime_error": (only(pass_state(Parameters={"x.$": "$.nope"})), {"a": 1}),
    "parallel_branch_ending_in_succeed": (
        only(
            {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Done", "States": {"Done": {"Type": "Succeed", "OutputPath": "$.a"}}},
                    {"StartAt": "Work", "States": {"Work": pass_state(Result={"worked": True})}},
                ],
                "ResultSelector": {"first.$": "$[0]", "count.$": "States.ArrayLength($)"},
                "ResultPath": "$.out",
                "End": True,
            }
        ),
        {"a": [1]},
    ),
    "map_failing_iteration_caught": (
        {
            "StartAt": "M",
            "States": {
                "M": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "MaxConcurrency": 1,
                    "ItemProcessor": {
                        "StartAt": "Check",
                        "States": {
                            "Check": {
                                "Type": "Choice",
                                "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Reject"}],
                                "Default": "Accept",
                            },
                            "Reject": {"Type": "Fail", "Error": "Item.Rejected", "Cause": "two"},
                            "Accept": pass_state(),
                        },
                    },
                    "Catch": [{"ErrorEquals": ["Item.Rejected"], "ResultPath": "$.error", "Next": "Handled"}],
                    "End": True,
                },
                "Handled": pass_state(),
            },
        },
        {"items": [1, 2, 3]},
    ),
    "map_empty_items": (
        only(
            {
                "Type": "Map",
                "ItemsPath": "$.xs",
                "ItemProcessor": ITEM_PROCESSOR,
                "ResultPath": "$.out",
                "End": True,
            }
        ),
        {"xs": []},
    ),
    "choice_spec_example": (
        {
            "StartAt": "C",
            "States": {
                "C": {
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
                    ],
                    "Default": "RecordEvent",
                },
                "Public": pass_state(Result={"to": "Public"}),
                "ValueInTwenties": pass_state(Result={"to": "ValueInTwenties"}),
                "RecordEvent": pass_state(Result={"to": "RecordEvent"}),
            },
        },
        {"type": "Private", "value": 25},
    ),
    "format_every_kind_of_value": (
        only(
            pass_state(
                Parameters={"s.$": "States.Format('{} {} {} {} {} {} {}', $.i, $.f, $.t, $.n, $.s, $.o, $.a)"}
            )
        ),
        {"i": 3, "f": 1.1, "t": True, "n": None, "s": "text", "o": {"Arg1": 1, "Arg2": []}, "a": [1, "x"]},
    ),
    "number_input": (only(pass_state(Parameters={"seen.$": "$", "input.$": "$$.Execution.Input"})), 7),
    "array_input_input_path_null": (
        {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "InputPath": None, "Parameters": {"seen.$": "$"}, "Next": "B"},
                "B": pass_state(ResultPath="$.copy", OutputPath="$.copy"),
            },
        },
        [1, 2],
    ),
    "map_items_path_not_an_array": (
        only({"Type": "Map", "ItemsPath": "$.xs", "ItemProcessor": ITEM_PROCESSOR, "End": True}),
        {"xs": 5},
    ),
    "jsonata_state": (
        only({"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input.a %}", "End": True}),
        {"a": 1},
    ),
}

KNOWN_MOTO_DIFFERENCES = {
    "pass_definite_nested_index": "moto evaluates '$.a[0].b' as an indefinite path and returns [1]; AWS returns 1",
    "choice_no_match": "moto fails with States.Runtime where AWS reports States.NoChoiceMatched",
    "jsonata_state": (
        "moto stubs JSONata (its JSONata states do not evaluate expressions); the local engine evaluates them "
        "as AWS does (see test_the_local_engine_evaluates_the_jsonata_case)"
    ),
    "map_items_path_not_an_array": (
        "moto reports States.QueryEvaluationError, AWS's name for a failed JSONata expression; the local engine "
        "reports States.Runtime, as for the other path failures of a JSONPath state"
    ),
    "map_item_context_inside_iterations": (
        "moto offers $$.Map.Item to the states of an iteration; AWS offers it to the Map's ItemSelector only"
    ),
}


@pytest.fixture(scope="module")
def stepfunctions() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            env.setenv(name, value)
        env.delenv("AWS_PROFILE", raising=False)
        with moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield boto3.client("stepfunctions", region_name="us-east-1")


def run_on_moto(client: Any, case: str, definition: dict[str, Any], data: Any) -> tuple[str, Any, str | None]:
    machine = client.create_state_machine(
        name=case, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/differential"
    )
    execution = client.start_execution(
        stateMachineArn=machine["stateMachineArn"], name=EXECUTION, input=json.dumps(data)
    )
    deadline = time.monotonic() + 10
    while True:
        described = client.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    output = json.loads(described["output"]) if "output" in described else None
    return described["status"], output, described.get("error")


def run_locally(case: str, definition: dict[str, Any], data: Any) -> tuple[str, Any, str | None]:
    result = Engine(TaskRegistry(), VirtualClock()).run(
        definition, data, name=EXECUTION, state_machine_name=case
    )
    return result.status, result.output, result.error


@pytest.mark.parametrize("case", list(CASES))
def test_engine_agrees_with_moto(stepfunctions: Any, case: str) -> None:
    if case in KNOWN_MOTO_DIFFERENCES:
        pytest.skip(KNOWN_MOTO_DIFFERENCES[case])
    definition, data = CASES[case]
    assert run_locally(case, definition, data) == run_on_moto(stepfunctions, case, definition, data)


def test_the_local_engine_evaluates_the_jsonata_case() -> None:
    definition, data = CASES["jsonata_state"]
    assert run_locally("jsonata_state", definition, data) == ("SUCCEEDED", 1, None)
