import pytest

from cvpipe.asl.choice import evaluate_rule, next_state, validate_rule
from cvpipe.asl.errors import NO_CHOICE_MATCHED, RUNTIME, StatesError

pytestmark = pytest.mark.unit

# (operator, operand written in the rule, value the Variable selects, expected result)
COMPARISONS = [
    ("StringEquals", "abc", "abc", True),
    ("StringEquals", "abc", "abd", False),
    ("StringLessThan", "abc", "abd", False),
    ("StringLessThan", "abd", "abc", True),
    ("StringGreaterThan", "abc", "abd", True),
    ("StringGreaterThan", "abc", "abc", False),
    ("StringLessThanEquals", "abc", "abc", True),
    ("StringLessThanEquals", "abd", "abc", True),
    ("StringLessThanEquals", "abc", "abd", False),
    ("StringGreaterThanEquals", "abc", "abc", True),
    ("StringGreaterThanEquals", "abd", "abc", False),
    ("NumericEquals", 1, 1.0, True),
    ("NumericEquals", 1, 2, False),
    ("NumericLessThan", 2, 1.5, True),
    ("NumericLessThan", 2, 2, False),
    ("NumericGreaterThan", 2, 2.5, True),
    ("NumericGreaterThan", 2, 2, False),
    ("NumericLessThanEquals", 2, 2, True),
    ("NumericLessThanEquals", 2, 3, False),
    ("NumericGreaterThanEquals", 2, 2, True),
    ("NumericGreaterThanEquals", 2, 1, False),
    ("BooleanEquals", True, True, True),
    ("BooleanEquals", False, True, False),
    ("TimestampEquals", "2016-08-18T17:33:00Z", "2016-08-18T19:33:00+02:00", True),
    ("TimestampEquals", "2016-08-18T17:33:00Z", "2016-08-18T17:33:00.001Z", False),
    ("TimestampLessThan", "2016-08-18T17:33:00Z", "2016-08-18T12:33:00-05:00", False),
    ("TimestampLessThan", "2016-08-18T17:33:00Z", "2016-08-18T17:32:59.999999999Z", True),
    ("TimestampGreaterThan", "2016-08-18T17:33:00Z", "2016-08-18T18:33:00+00:59", True),
    ("TimestampGreaterThan", "2016-08-18T17:33:00Z", "2016-08-18T17:33:00Z", False),
    ("TimestampLessThanEquals", "2016-08-18T17:33:00Z", "2016-08-18T17:33:00.000Z", True),
    ("TimestampLessThanEquals", "2016-08-18T17:33:00Z", "2016-08-19T00:00:00Z", False),
    ("TimestampGreaterThanEquals", "2016-08-18T17:33:00+01:00", "2016-08-18T16:33:00Z", True),
    ("TimestampGreaterThanEquals", "2016-08-18T17:33:00Z", "2016-08-18T17:32:00Z", False),
]


@pytest.mark.parametrize(("name", "operand", "value", "expected"), COMPARISONS)
def test_comparison(name, operand, value, expected):
    assert evaluate_rule({"Variable": "$.v", name: operand}, {"v": value}) is expected


@pytest.mark.parametrize(("name", "operand", "value", "expected"), COMPARISONS)
def test_path_form_compares_with_the_value_at_the_path(name, operand, value, expected):
    rule = {"Variable": "$.v", f"{name}Path": "$.other"}
    assert evaluate_rule(rule, {"v": value, "other": operand}) is expected


def test_path_form_reads_the_context_object():
    rule = {"Variable": "$.name", "StringEqualsPath": "$$.Execution.Name"}
    assert evaluate_rule(rule, {"name": "run-1"}, {"Execution": {"Name": "run-1"}})


@pytest.mark.parametrize(
    ("name", "operand", "value"),
    [
        ("NumericEquals", 1, "1"),
        ("NumericEquals", 1, True),
        ("NumericGreaterThan", 0, None),
        ("StringEquals", "1", 1),
        ("StringLessThan", "b", ["a"]),
        ("BooleanEquals", True, "true"),
        ("BooleanEquals", False, 0),
        ("TimestampEquals", "2016-08-18T17:33:00Z", 1471541580),
        ("TimestampLessThan", "2016-08-18T17:33:00Z", "yesterday"),
        ("TimestampEquals", "2016-08-18T17:33:00Z", "2016-08-18t17:33:00z"),
        ("StringMatches", "*", 5),
    ],
)
def test_a_type_mismatch_is_false(name, operand, value):
    assert evaluate_rule({"Variable": "$.v", name: operand}, {"v": value}) is False


def test_a_path_comparand_of_the_wrong_type_is_false():
    assert evaluate_rule({"Variable": "$.v", "NumericEqualsPath": "$.s"}, {"v": 1, "s": "1"}) is False


def test_strings_order_by_utf16_code_unit_like_java():
    # U+1F600 is stored as surrogates (0xD83D...) which sort below U+FFFF, unlike code point order.
    data = {"v": "\U0001f600"}
    assert evaluate_rule({"Variable": "$.v", "StringLessThan": "\uffff"}, data)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("foo*.log", "foo23.log", True),
        ("*.log", "zebra.log", True),
        ("foo*.*", "foobar.zebra", True),
        ("foo*.log", "foo23.txt", False),
        ("*", "", True),
        ("log", "catalog", False),
        ("a.c", "abc", False),
        ("x\\*y", "x*y", True),
        ("x\\*y", "xzzy", False),
        ("back\\\\slash*", "back\\slash!", True),
        ("multi\nline*", "multi\nline\nmore", True),
    ],
)
def test_string_matches(pattern, value, expected):
    assert evaluate_rule({"Variable": "$.v", "StringMatches": pattern}, {"v": value}) is expected


@pytest.mark.parametrize(
    ("name", "value", "holds"),
    [
        ("IsNull", None, True),
        ("IsNull", 0, False),
        ("IsNumeric", 1.5, True),
        ("IsNumeric", "1.5", False),
        ("IsNumeric", True, False),
        ("IsString", "", True),
        ("IsString", 1, False),
        ("IsBoolean", False, True),
        ("IsBoolean", "false", False),
        ("IsTimestamp", "2016-08-18T17:33:00.25-07:30", True),
        ("IsTimestamp", "2016-08-18 17:33:00Z", False),
        ("IsTimestamp", "2016-02-30T00:00:00Z", False),
        ("IsTimestamp", "2016-08-18T17:33:00+24:00", False),
    ],
)
def test_type_tests(name, value, holds):
    assert evaluate_rule({"Variable": "$.v", name: True}, {"v": value}) is holds
    assert evaluate_rule({"Variable": "$.v", name: False}, {"v": value}) is (not holds)


@pytest.mark.parametrize(
    ("path", "present"),
    [
        ("$.v", True),
        ("$.n", True),
        ("$.missing", False),
        ("$.list[0]", True),
        ("$.list[1]", False),
        ("$.v.x", False),
    ],
)
def test_is_present(path, present):
    data = {"v": 1, "n": None, "list": [0]}
    assert evaluate_rule({"Variable": path, "IsPresent": True}, data) is present
    assert evaluate_rule({"Variable": path, "IsPresent": False}, data) is (not present)


def test_a_missing_variable_is_a_runtime_error():
    with pytest.raises(StatesError) as raised:
        evaluate_rule({"Variable": "$.missing", "IsNull": True}, {})
    assert raised.value.error == RUNTIME
    assert (
        raised.value.cause
        == "Invalid path '$.missing': The choice state's condition path references an invalid value."
    )


def test_a_missing_comparand_path_is_a_runtime_error():
    with pytest.raises(StatesError) as raised:
        evaluate_rule({"Variable": "$.v", "NumericEqualsPath": "$.missing"}, {"v": 1})
    assert raised.value.error == RUNTIME


def test_and_short_circuits_so_is_present_can_guard():
    rule = {"And": [{"Variable": "$.x", "IsPresent": True}, {"Variable": "$.x", "NumericEquals": 1}]}
    assert evaluate_rule(rule, {}) is False
    assert evaluate_rule(rule, {"x": 1}) is True


def test_nested_and_or_not():
    rule = {
        "Or": [
            {"Not": {"Variable": "$.type", "StringEquals": "Private"}},
            {
                "And": [
                    {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                    {
                        "Not": {
                            "Or": [
                                {"Variable": "$.value", "NumericEquals": 25},
                                {"Variable": "$.flag", "BooleanEquals": True},
                            ]
                        }
                    },
                ]
            },
        ]
    }
    assert evaluate_rule(rule, {"type": "Public"})
    assert evaluate_rule(rule, {"type": "Private", "value": 21, "flag": False})
    assert not evaluate_rule(rule, {"type": "Private", "value": 25, "flag": False})
    assert not evaluate_rule(rule, {"type": "Private", "value": 21, "flag": True})
    assert not evaluate_rule(rule, {"type": "Private", "value": 19, "flag": False})


SPEC_CHOICE = {
    "Type": "Choice",
    "Choices": [
        {"Not": {"Variable": "$.type", "StringEquals": "Private"}, "Next": "Public"},
        {"Variable": "$.value", "NumericEquals": 0, "Next": "ValueIsZero"},
        {
            "And": [
                {"Variable": "$.value", "NumericGreaterThanEquals": 20},
                {"Variable": "$.value", "NumericLessThan": 30},
            ],
            "Next": "ValueInTwenties",
        },
        {"Variable": "$.value", "NumericEquals": 20, "Next": "Unreachable"},
    ],
    "Default": "DefaultState",
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "Public", "value": 0}, "Public"),
        ({"type": "Private", "value": 0}, "ValueIsZero"),
        ({"type": "Private", "value": 20}, "ValueInTwenties"),
        ({"type": "Private", "value": 35}, "DefaultState"),
    ],
)
def test_next_state_takes_the_first_match_else_the_default(data, expected):
    assert next_state(SPEC_CHOICE, data) == expected


def test_no_match_and_no_default():
    state = {key: value for key, value in SPEC_CHOICE.items() if key != "Default"}
    with pytest.raises(StatesError) as raised:
        next_state(state, {"type": "Private", "value": 35})
    assert raised.value.error == NO_CHOICE_MATCHED


class TestValidateRule:
    @pytest.mark.parametrize(
        "rule",
        [
            {"Variable": "$.v", "StringEquals": "a", "Next": "N", "Comment": "why"},
            {"Variable": "$$.Execution.Name", "StringMatches": "run-*", "Next": "N"},
            {"Variable": "$.v", "NumericLessThanPath": "$.limit", "Next": "N"},
            {"Variable": "$.v", "TimestampEquals": "2016-08-18T17:33:00.5+02:00", "Next": "N"},
            {"Variable": "$.v", "IsPresent": False, "Next": "N"},
            {"Variable": "$.items[0].v", "BooleanEquals": False, "Next": "N"},
            {
                "And": [
                    {"Variable": "$.a", "IsNull": False},
                    {"Not": {"Variable": "$.b", "NumericEquals": 1.5}},
                ],
                "Next": "N",
            },
            {"Or": [{"Variable": "$.a", "IsString": True}], "Next": "N"},
        ],
    )
    def test_valid_rules(self, rule):
        assert validate_rule(rule) == []

    @pytest.mark.parametrize(
        ("rule", "problem"),
        [
            (
                {"Variable": "$.v", "StringEqual": "a", "Next": "N"},
                "'StringEqual' is not a Choice rule operator",
            ),
            ({"Variable": "$.v", "Next": "N"}, "needs exactly one operator, found none"),
            (
                {"Variable": "$.v", "StringEquals": "a", "NumericEquals": 1, "Next": "N"},
                "needs exactly one operator, found StringEquals, NumericEquals",
            ),
            ({"StringEquals": "a", "Next": "N"}, "StringEquals needs a 'Variable'"),
            ({"Variable": "v", "StringEquals": "a", "Next": "N"}, "Variable invalid path 'v'"),
            ({"Variable": "$.v", "StringEquals": 1, "Next": "N"}, "StringEquals must be a string"),
            ({"Variable": "$.v", "NumericEquals": "1", "Next": "N"}, "NumericEquals must be a number"),
            ({"Variable": "$.v", "NumericEquals": True, "Next": "N"}, "NumericEquals must be a number"),
            ({"Variable": "$.v", "BooleanEquals": "true", "Next": "N"}, "BooleanEquals must be a boolean"),
            (
                {"Variable": "$.v", "TimestampEquals": "2016-08-18", "Next": "N"},
                "TimestampEquals must be an RFC 3339 timestamp",
            ),
            ({"Variable": "$.v", "IsNull": "yes", "Next": "N"}, "IsNull must be a boolean"),
            ({"Variable": "$.v", "StringEqualsPath": "v", "Next": "N"}, "StringEqualsPath must be a path"),
            ({"Variable": "$.v", "StringEquals": "a"}, "'Next' must name a state"),
            ({"And": [], "Next": "N"}, "And must be a non-empty array of rules"),
            (
                {"Or": {"Variable": "$.v", "IsNull": True}, "Next": "N"},
                "Or must be a non-empty array of rules",
            ),
            ({"Not": [], "Next": "N"}, "Not: a Choice rule must be an object"),
            (
                {"Variable": "$.v", "And": [{"Variable": "$.v", "IsNull": True}], "Next": "N"},
                "'Variable' is not allowed with And",
            ),
            (
                {"And": [{"Variable": "$.v", "IsNull": True, "Next": "X"}], "Next": "N"},
                "And[0]: 'Next' is only allowed on top-level rules",
            ),
            (
                {
                    "Or": [
                        {"Variable": "$.v", "IsNull": True},
                        {"Not": {"Variable": "$.v", "NumericEquals": "x"}},
                    ],
                    "Next": "N",
                },
                "Or[1].Not: NumericEquals must be a number",
            ),
        ],
    )
    def test_problems(self, rule, problem):
        problems = validate_rule(rule)
        assert any(problem in found for found in problems), problems

    def test_not_an_object(self):
        assert validate_rule("rule") == ["a Choice rule must be an object"]

    def test_top_level_problems_have_no_prefix_and_nested_ones_say_where(self):
        rule = {
            "And": [{"Variable": "$.v", "IsNull": True}, {"Not": {"Variable": "$.v", "NumericEquals": "1"}}],
            "Next": "",
        }
        assert validate_rule(rule) == [
            "'Next' must name a state",
            'And[1].Not: NumericEquals must be a number, got "1"',
        ]
