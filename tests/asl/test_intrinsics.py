import base64
import hashlib
import re

import pytest

from cvpipe.asl.errors import INTRINSIC_FAILURE, RUNTIME, StatesError
from cvpipe.asl.intrinsics import (
    Call,
    Constant,
    PathArgument,
    Text,
    evaluate_intrinsic,
    is_intrinsic,
    parse_intrinsic,
)

pytestmark = pytest.mark.unit


def run(expr, data=None, context=None):
    return evaluate_intrinsic(expr, {} if data is None else data, context)


def failure(expr, data=None, context=None) -> StatesError:
    with pytest.raises(StatesError) as raised:
        run(expr, data, context)
    assert raised.value.error == INTRINSIC_FAILURE
    return raised.value


class TestParsing:
    def test_is_intrinsic(self):
        assert is_intrinsic("States.Array(1)")
        assert is_intrinsic("  States.UUID()")
        assert not is_intrinsic("$.a")
        assert not is_intrinsic(5)

    def test_arguments_of_every_kind(self):
        call = parse_intrinsic(
            "States.Array('it\\'s', -1.5, 7, true, false, null, $.a[0]['b c'], $$.Execution.Id, States.UUID())"
        )
        assert call == Call(
            "States.Array",
            (
                Text("it's", ("it's",)),
                Constant(-1.5),
                Constant(7),
                Constant(True),
                Constant(False),
                Constant(None),
                PathArgument("$.a[0]['b c']"),
                PathArgument("$$.Execution.Id"),
                Call("States.UUID", ()),
            ),
        )

    def test_paths_with_filters_commas_and_parentheses(self):
        call = parse_intrinsic("States.Array($.items[?(@.a == 'x, y')].b , $.c)")
        assert call.args == (PathArgument("$.items[?(@.a == 'x, y')].b"), PathArgument("$.c"))

    def test_placeholders_of_a_literal_template(self):
        call = parse_intrinsic("States.Format('a{}b\\{\\}c{}', 1, 2)")
        assert call.args[0] == Text("a{}b{}c{}", ("a", "b{}c", ""))

    @pytest.mark.parametrize(
        ("expr", "problem"),
        [
            ("States.Nope()", "unknown intrinsic function States.Nope"),
            ("Format('x')", "expected a function name"),
            ("States.UUID(1)", "States.UUID takes 0 arguments, got 1"),
            ("States.ArrayRange(1, 2)", "States.ArrayRange takes 3 arguments, got 2"),
            ("States.MathRandom(1)", "States.MathRandom takes 2 to 3 arguments, got 1"),
            ("States.Format()", "States.Format takes at least 1 arguments, got 0"),
            ("States.Format('{} and {}', 1)", "template has 2 placeholders but 1 values"),
            ("States.Format(5)", "first argument of States.Format must be a string"),
            ("States.Array('open", "unterminated string literal"),
            ("States.Array('a\\nb')", "a backslash must escape one of"),
            ("States.Array(1 2)", "expected ',' or ')'"),
            ("States.Array(1", "expected ',' or ')'"),
            ("States.Array(1) extra", "unexpected text after the closing parenthesis"),
            ("States.Array(foo)", "expected a string in single quotes"),
            ("States.Array($.a[)", "invalid path"),
            ("States.Array", "expected '(' after States.Array"),
        ],
    )
    def test_syntax_errors_say_what_is_wrong(self, expr, problem):
        with pytest.raises(ValueError, match=re.escape(problem)):
            parse_intrinsic(expr)

    def test_syntax_errors_at_run_time_are_intrinsic_failures(self):
        assert "unknown intrinsic function" in failure("States.Nope()").cause


class TestFormat:
    DATA = {"name": "Arnav", "template": "Hello, my name is {}."}

    def test_aws_examples(self):
        assert run("States.Format('Hello, my name is {}.', $.name)", self.DATA) == "Hello, my name is Arnav."
        assert run("States.Format($.template, $.name)", self.DATA) == "Hello, my name is Arnav."

    def test_spec_example(self):
        data = {"name": "Foo", "zebra": "stripe"}
        assert (
            run("States.Format('Your name is {}, we are in the year {}', $.name, 2020)", data)
            == "Your name is Foo, we are in the year 2020"
        )

    def test_escapes(self):
        assert run("States.Format('\\{\\} is literal, {} is not; \\'quoted\\' \\\\ back', 'x')") == (
            "{} is literal, x is not; 'quoted' \\ back"
        )

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (1, "1"),
            (1.5, "1.5"),
            (-0.25, "-0.25"),
            (2.0, "2.0"),
            (True, "true"),
            (None, "null"),
            ("s", "s"),
            # Objects and arrays print as AWS's Java runtime prints them, not as JSON.
            ({"a": 1, "b": ["x", None]}, "{a=1, b=[x, null]}"),
            ([1, "two", {"k": "v"}], "[1, two, {k=v}]"),
        ],
    )
    def test_values_print_as_aws_prints_them(self, value, text):
        assert run("States.Format('<{}>', $.v)", {"v": value}) == f"<{text}>"

    def test_nested_calls(self):
        data = {"ImageRecipe": {"Arn": "arn:aws:imagebuilder:us-east-1:123:image-recipe/name.version/1.0.0"}}
        expr = (
            "States.Format('{}.{}.{}', "
            "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 0), "
            "States.ArrayGetItem(States.StringSplit(States.ArrayGetItem(States.StringSplit($.ImageRecipe.Arn, '/'), 2), '.'), 1), "
            "States.ArrayLength(States.Array(1, 2, 3)))"
        )
        assert run(expr, data) == "1.0.3"

    def test_a_template_from_a_path_must_match_the_argument_count(self):
        assert (
            "1 placeholders but 2 values" in failure("States.Format($.template, 'a', 'b')", self.DATA).cause
        )

    def test_a_template_from_a_path_must_be_a_string(self):
        assert "argument 1 must be a string" in failure("States.Format($.n)", {"n": 5}).cause

    def test_context_arguments(self):
        assert (
            run("States.Format('Today is {}', $$.DayOfWeek)", {}, {"DayOfWeek": "TUESDAY"})
            == "Today is TUESDAY"
        )


class TestJson:
    def test_string_to_json_spec_example(self):
        assert run("States.StringToJson($.someString)", {"someString": '{"number": 20}'}) == {"number": 20}

    def test_json_to_string_spec_example(self):
        data = {"someJson": {"name": "Foo", "year": 2020}, "zebra": "stripe"}
        assert run("States.JsonToString($.someJson)", data) == '{"name":"Foo","year":2020}'

    @pytest.mark.parametrize(
        "value", [{"a": [1, 2.5, None, True], "é": "ü"}, [1, {"b": {}}], "text", 3, None]
    )
    def test_round_trip(self, value):
        text = run("States.JsonToString($.v)", {"v": value})
        assert run("States.StringToJson($.t)", {"t": text}) == value

    def test_json_to_string_is_compact_and_keeps_unicode(self):
        assert run("States.JsonToString($.v)", {"v": {"a": "é", "b": [1, 2]}}) == '{"a":"é","b":[1,2]}'

    @pytest.mark.parametrize("text", ["", " ", "null"])
    def test_string_to_json_of_blank_text_is_null(self, text):
        # AWS (recorded by LocalStack's snapshot tests): "" and " " parse as null, like "null".
        assert run("States.StringToJson($.t)", {"t": text}) is None

    @pytest.mark.parametrize("text", ["{not json", "NaN", "[1,]"])
    def test_string_to_json_rejects_what_is_not_json(self, text):
        assert "States.StringToJson" in failure("States.StringToJson($.t)", {"t": text}).cause

    def test_string_to_json_needs_a_string(self):
        assert "argument 1 must be a string" in failure("States.StringToJson($.t)", {"t": {"a": 1}}).cause

    def test_json_merge_aws_example(self):
        data = {"json1": {"a": {"a1": 1, "a2": 2}, "b": 2}, "json2": {"a": {"a3": 1, "a4": 2}, "c": 3}}
        assert run("States.JsonMerge($.json1, $.json2, false)", data) == {
            "a": {"a3": 1, "a4": 2},
            "b": 2,
            "c": 3,
        }
        assert data["json1"] == {"a": {"a1": 1, "a2": 2}, "b": 2}

    def test_json_merge_is_shallow_only(self):
        assert "shallow" in failure("States.JsonMerge($.a, $.b, true)", {"a": {}, "b": {}}).cause

    def test_json_merge_needs_objects(self):
        assert (
            "argument 2 must be an object"
            in failure("States.JsonMerge($.a, $.b, false)", {"a": {}, "b": [1]}).cause
        )


class TestArrays:
    def test_array_spec_example(self):
        data = {"someJson": {"random": "abcdefg"}, "zebra": "stripe"}
        assert run("States.Array('Foo', 2020, $.someJson, null)", data) == [
            "Foo",
            2020,
            {"random": "abcdefg"},
            None,
        ]
        assert run("States.Array()") == []

    @pytest.mark.parametrize(
        ("items", "size", "chunks"),
        [
            ([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, [[1, 2, 3, 4], [5, 6, 7, 8], [9]]),
            ([1, 2, 3, 4], 2, [[1, 2], [3, 4]]),
            ([1, 2], 5, [[1, 2]]),
            ([], 3, []),
            ([1, 2, 3], 1.5, [[1, 2], [3]]),  # AWS rounds a non-integer size to the nearest integer
        ],
    )
    def test_array_partition(self, items, size, chunks):
        assert run("States.ArrayPartition($.a, $.n)", {"a": items, "n": size}) == chunks

    @pytest.mark.parametrize("size", [0, -1, "2"])
    def test_array_partition_needs_a_positive_size(self, size):
        assert (
            "States.ArrayPartition" in failure("States.ArrayPartition($.a, $.n)", {"a": [1], "n": size}).cause
        )

    @pytest.mark.parametrize(
        ("value", "found"),
        [(5, True), (10, False), ({"k": [1, 2], "j": None}, True), ("5", False), (True, False), (1.0, False)],
    )
    def test_array_contains(self, value, found):
        data = {"a": [1, 2, 3, 4, 5, {"j": None, "k": [1, 2]}], "v": value}
        assert run("States.ArrayContains($.a, $.v)", data) is found

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ("1, 9, 2", [1, 3, 5, 7, 9]),
            ("1, 10, 2", [1, 3, 5, 7, 9]),
            ("5, 1, -1", [5, 4, 3, 2, 1]),
            ("10, 0, -3", [10, 7, 4, 1]),
            ("-2, 2, 2", [-2, 0, 2]),
            ("3, 3, 1", [3]),
            ("1, 5, -1", []),
            ("0.6, 2.4, 1", [1, 2]),
        ],
    )
    def test_array_range(self, args, expected):
        assert run(f"States.ArrayRange({args})") == expected

    def test_array_range_limits(self):
        assert len(run("States.ArrayRange(1, 1000, 1)")) == 1000
        assert "more than 1000" in failure("States.ArrayRange(1, 1001, 1)").cause
        assert "step must not be 0" in failure("States.ArrayRange(1, 5, 0)").cause
        assert "argument 2 must be a number" in failure("States.ArrayRange(1, 'x', 1)").cause

    def test_array_get_item(self):
        data = {"inputArray": [1, 2, 3, 4, 5, 6, 7, 8, 9], "index": 5}
        assert run("States.ArrayGetItem($.inputArray, $.index)", data) == 6
        assert "out of bounds" in failure("States.ArrayGetItem($.inputArray, 9)", data).cause
        assert "out of bounds" in failure("States.ArrayGetItem($.inputArray, -1)", data).cause

    def test_array_length(self):
        assert run("States.ArrayLength($.a)", {"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]}) == 9
        assert run("States.ArrayLength($.a)", {"a": []}) == 0
        assert "argument 1 must be an array" in failure("States.ArrayLength($.a)", {"a": "abc"}).cause

    def test_array_unique(self):
        assert run("States.ArrayUnique($.a)", {"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]}) == [1, 2, 3, 4]
        mixed = [{"a": 1, "b": 2}, {"b": 2, "a": 1}, 1, True, "1", 1, None, None]
        assert run("States.ArrayUnique($.a)", {"a": mixed}) == [{"a": 1, "b": 2}, 1, True, "1", None]


class TestEncoding:
    def test_base64_aws_examples(self):
        assert run("States.Base64Encode($.input)", {"input": "Data to encode"}) == "RGF0YSB0byBlbmNvZGU="
        assert run("States.Base64Decode($.base64)", {"base64": "RGF0YSB0byBlbmNvZGU="}) == "Data to encode"

    def test_base64_round_trip_of_unicode(self):
        encoded = run("States.Base64Encode('héllo ✓')")
        assert encoded == base64.b64encode("héllo ✓".encode()).decode()
        assert run("States.Base64Decode($.e)", {"e": encoded}) == "héllo ✓"

    def test_base64_limits_and_errors(self):
        assert len(run("States.Base64Encode($.s)", {"s": "x" * 10_000})) > 0
        assert "longer than 10000" in failure("States.Base64Encode($.s)", {"s": "x" * 10_001}).cause
        assert "not Base64" in failure("States.Base64Decode('abc')").cause
        assert "must be a string" in failure("States.Base64Encode(5)").cause

    @pytest.mark.parametrize(
        ("algorithm", "hashlib_name"),
        [
            ("MD5", "md5"),
            ("SHA-1", "sha1"),
            ("SHA-256", "sha256"),
            ("SHA-384", "sha384"),
            ("SHA-512", "sha512"),
        ],
    )
    def test_hash(self, algorithm, hashlib_name):
        data = {"Data": "input data ✓", "Algorithm": algorithm}
        expected = hashlib.new(hashlib_name, "input data ✓".encode()).hexdigest()
        assert run("States.Hash($.Data, $.Algorithm)", data) == expected

    def test_hash_aws_example(self):
        assert run("States.Hash('input data', 'SHA-1')") == "aaff4a450a104cd177d28d18d74485e8cae074b7"

    def test_hash_errors(self):
        assert "must be one of MD5, SHA-1" in failure("States.Hash('x', 'SHA256')").cause
        assert "longer than 10000" in failure("States.Hash($.s, 'MD5')", {"s": "x" * 10_001}).cause


class TestMathAndStrings:
    def test_math_random_is_in_range_and_seeded(self):
        seeded = {run("States.MathRandom(1, 999, 42)") for _ in range(5)}
        assert len(seeded) == 1 and 1 <= seeded.pop() < 999
        assert all(run("States.MathRandom(3, 5)") in (3, 4) for _ in range(50))
        assert run("States.MathRandom(7, 8)") == 7  # the end is exclusive
        assert "less than the end" in failure("States.MathRandom(5, 5)").cause

    def test_math_add(self):
        assert run("States.MathAdd($.value1, $.step)", {"value1": 111, "step": -1}) == 110
        assert run("States.MathAdd(1.5, 2.4)") == 4  # rounded to the nearest integers, 2 + 2
        assert "between -2147483648 and 2147483647" in failure("States.MathAdd(2147483648, 1)").cause
        assert "argument 2 must be a number" in failure("States.MathAdd(1, '2')").cause

    @pytest.mark.parametrize(
        ("text", "delimiters", "parts"),
        [
            ("1,2,3,4,5", ",", ["1", "2", "3", "4", "5"]),
            ("This.is+a,test=string", ".+,=", ["This", "is", "a", "test", "string"]),
            ("a,,b,", ",", ["a", "b"]),
            ("no delimiter", ",", ["no delimiter"]),
            ("a]b\\c", "]\\", ["a", "b", "c"]),
        ],
    )
    def test_string_split(self, text, delimiters, parts):
        assert run("States.StringSplit($.t, $.d)", {"t": text, "d": delimiters}) == parts

    def test_uuid_is_a_random_version_4_uuid(self):
        first, second = run("States.UUID()"), run("States.UUID()")
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)
        assert first != second


def test_a_missing_path_argument_is_a_runtime_error():
    with pytest.raises(StatesError) as raised:
        run("States.Array($.missing)", {"a": 1})
    assert raised.value.error == RUNTIME
    assert "$.missing" in raised.value.cause


def test_failures_name_the_function():
    assert failure("States.ArrayLength($.a)", {"a": {}}).cause.startswith(
        "Invalid arguments in States.ArrayLength:"
    )
