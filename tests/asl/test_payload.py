import copy

import pytest

from cvpipe.asl.errors import (
    DATA_LIMIT_EXCEEDED,
    INTRINSIC_FAILURE,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    StatesError,
)
from cvpipe.asl.payload import (
    apply_template,
    check_payload_size,
    payload_size,
    process_input,
    process_output,
)

pytestmark = pytest.mark.unit


def runtime_error(call, *args) -> str:
    with pytest.raises(StatesError) as raised:
        call(*args)
    assert raised.value.error == RUNTIME
    return raised.value.cause


class TestApplyTemplate:
    def test_spec_parameters_example(self):
        parameters = {
            "flagged": True,
            "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[3:]"},
            "weekday.$": "$$.DayOfWeek",
            "formattedOutput.$": "States.Format('Today is {}', $$.DayOfWeek)",
        }
        data = {"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]}
        assert apply_template(parameters, data, {"DayOfWeek": "TUESDAY"}) == {
            "flagged": True,
            "parts": {"first": 0, "last3": [30, 40, 50]},
            "weekday": "TUESDAY",
            "formattedOutput": "Today is TUESDAY",
        }

    def test_fields_inside_lists_are_resolved(self):
        template = {"jobs": [{"name.$": "$.name", "static": 1}, "$.not-a-path", [{"deep.$": "$.n"}]], "n": 0}
        assert apply_template(template, {"name": "j", "n": 5}) == {
            "jobs": [{"name": "j", "static": 1}, "$.not-a-path", [{"deep": 5}]],
            "n": 0,
        }

    def test_a_list_template(self):
        assert apply_template([{"a.$": "$.x"}], {"x": 1}) == [{"a": 1}]

    def test_the_template_is_not_shared_with_the_result(self):
        template = {"nested": {"list": [1, 2]}}
        result = apply_template(template, {})
        result["nested"]["list"].append(3)
        assert template == {"nested": {"list": [1, 2]}}

    def test_whole_input_and_indefinite_paths(self):
        data = {"items": [{"id": 1}, {"id": 2}]}
        assert apply_template({"all.$": "$", "ids.$": "$.items[*].id"}, data) == {"all": data, "ids": [1, 2]}

    def test_a_missing_path_names_the_path_the_field_and_the_input(self):
        cause = runtime_error(apply_template, {"missing.$": "$.nope.deep"}, {"other": 1})
        assert (
            cause
            == "The JSONPath '$.nope.deep' specified for the field 'missing.$' could not be found in the input '{\"other\":1}'"
        )

    def test_a_missing_context_path_names_the_context_object(self):
        cause = runtime_error(apply_template, {"id.$": "$$.Execution.Nope"}, {}, {"Execution": {}})
        assert cause.startswith(
            "The JSONPath '$$.Execution.Nope' specified for the field 'id.$' could not be found in the context object"
        )

    def test_a_missing_path_inside_an_intrinsic_names_the_field(self):
        cause = runtime_error(apply_template, {"x.$": "States.Format('{}', $.gone)"}, {"a": 1})
        assert cause.startswith(
            "The JsonPath argument for the field 'x.$' could not be found in the input '{\"a\":1}'"
        )

    def test_intrinsic_failures_keep_their_error_name(self):
        with pytest.raises(StatesError) as raised:
            apply_template({"x.$": "States.ArrayLength($.a)"}, {"a": "text"})
        assert raised.value.error == INTRINSIC_FAILURE

    @pytest.mark.parametrize("value", ["not a path", 5, None])
    def test_a_dollar_field_needs_a_path_or_intrinsic(self, value):
        cause = runtime_error(apply_template, {"x.$": value}, {})
        assert "must be a valid JSONPath or a valid intrinsic function call" in cause

    def test_a_template_filled_again_reads_the_new_data_and_builds_new_containers(self):
        template = {"fixed": {"list": [1, 2]}, "value.$": "$.x"}
        first, second = apply_template(template, {"x": 1}), apply_template(template, {"x": 2})
        assert (first["value"], second["value"]) == (1, 2)
        assert first["fixed"] == second["fixed"] and first["fixed"] is not second["fixed"]
        assert first["fixed"]["list"] is not second["fixed"]["list"]

    def test_a_field_that_is_no_path_fails_each_time_the_template_is_filled(self):
        template = {"x.$": "not a path"}
        for _ in range(2):
            assert "must be a valid JSONPath" in runtime_error(apply_template, template, {})


class TestProcessInput:
    DATA = {"numbers": {"val1": 3, "val2": 4}, "title": "Numbers to add"}

    def test_input_path(self):
        assert process_input({}, self.DATA) == self.DATA
        assert process_input({"InputPath": "$"}, self.DATA) == self.DATA
        assert process_input({"InputPath": "$.numbers"}, self.DATA) == {"val1": 3, "val2": 4}
        assert process_input({"InputPath": None}, self.DATA) == {}

    def test_parameters_apply_after_input_path(self):
        state = {"InputPath": "$.numbers", "Parameters": {"a.$": "$.val1", "ctx.$": "$$.State.Name"}}
        assert process_input(state, self.DATA, {"State": {"Name": "Add"}}) == {"a": 3, "ctx": "Add"}

    def test_a_map_state_keeps_its_parameters_for_each_item(self):
        state = {"Type": "Map", "InputPath": "$.numbers", "Parameters": {"x.$": "$.nope"}}
        assert process_input(state, self.DATA) == {"val1": 3, "val2": 4}

    def test_a_missing_input_path_is_a_runtime_error(self):
        assert "$.missing" in runtime_error(process_input, {"InputPath": "$.missing"}, self.DATA)


class TestProcessOutput:
    RAW = {"title": "Numbers to add", "numbers": {"val1": 3, "val2": 4}}

    def test_spec_result_path_example(self):
        state = {"InputPath": "$.numbers", "ResultPath": "$.sum", "OutputPath": "$"}
        assert process_output(state, self.RAW, 7) == {**self.RAW, "sum": 7}

    def test_result_path_defaults_to_replacing_the_input(self):
        assert process_output({}, self.RAW, {"r": 1}) == {"r": 1}
        assert process_output({"ResultPath": "$"}, self.RAW, "text") == "text"

    def test_result_path_null_keeps_the_input(self):
        assert process_output({"ResultPath": None}, self.RAW, {"r": 1}) == self.RAW

    def test_aws_docs_result_path_examples(self):
        raw = {"comment": "This is a test", "details": "Default example", "who": "AWS Step Functions"}
        result = "Hello, AWS Step Functions!"
        assert process_output({"ResultPath": "$.taskresult"}, raw, result) == {**raw, "taskresult": result}
        nested = {"strings": {"first": "a"}, "who": "x"}
        assert process_output({"ResultPath": "$.strings.lambdaresult"}, nested, result) == {
            "strings": {"first": "a", "lambdaresult": result},
            "who": "x",
        }

    def test_result_selector_then_result_path_then_output_path(self):
        result = {
            "resourceType": "elasticmapreduce",
            "resource": "createCluster.sync",
            "output": {"SdkHttpMetadata": {"HttpStatusCode": 200}, "ClusterId": "AKIAIOSFODNN7EXAMPLE"},
        }
        state = {
            "ResultSelector": {
                "ClusterId.$": "$.output.ClusterId",
                "ResourceType.$": "$.resourceType",
                "Static": 1,
            },
            "ResultPath": "$.EMROutput",
            "OutputPath": "$.EMROutput",
        }
        assert process_output(state, {"Name": "c"}, result) == {
            "ClusterId": "AKIAIOSFODNN7EXAMPLE",
            "ResourceType": "elasticmapreduce",
            "Static": 1,
        }

    def test_result_selector_reads_the_result_not_the_input(self):
        state = {"ResultSelector": {"v.$": "$.value"}, "ResultPath": "$.out"}
        assert process_output(state, {"value": "input"}, {"value": "result"}) == {
            "value": "input",
            "out": {"v": "result"},
        }

    def test_output_path(self):
        assert process_output({"OutputPath": "$.a"}, {}, {"a": [1]}) == [1]
        assert process_output({"OutputPath": None}, {}, {"a": [1]}) == {}
        assert "$.b" in runtime_error(process_output, {"OutputPath": "$.b"}, {}, {"a": 1})

    def test_the_raw_input_is_never_mutated(self):
        raw = {"a": {"b": 1}, "list": [1, 2]}
        snapshot = copy.deepcopy(raw)
        process_output({"ResultPath": "$.a.c"}, raw, 5)
        process_output({"ResultPath": "$.list[0]"}, raw, 5)
        assert raw == snapshot

    def test_result_path_into_a_non_object_fails(self):
        with pytest.raises(StatesError) as raised:
            process_output({"ResultPath": "$.title.x"}, self.RAW, 1)
        assert raised.value.error == RESULT_PATH_MATCH_FAILURE


class TestPayloadSize:
    def test_size_is_utf8_bytes_of_compact_json(self):
        assert payload_size({"a": [1, 2]}) == len('{"a":[1,2]}')
        assert payload_size("é") == 4  # two quotes and two bytes
        assert payload_size(None) == 4

    def test_limit(self):
        at_limit = "x" * (262_144 - 2)
        check_payload_size(at_limit)
        with pytest.raises(StatesError) as raised:
            check_payload_size(at_limit + "x")
        assert raised.value.error == DATA_LIMIT_EXCEEDED
        assert "262145" in raised.value.cause

    def test_custom_limit(self):
        with pytest.raises(StatesError):
            check_payload_size([1, 2, 3], limit=5)
