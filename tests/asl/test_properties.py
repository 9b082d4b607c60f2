"""Properties of the interpreter's paths and intrinsic functions over generated documents (seeded):
round trips, invariants, and no Python exception besides the documented StatesError."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonpath_ng.ext import parse

from cvpipe.asl.errors import StatesError
from cvpipe.asl.intrinsics import evaluate_intrinsic, parse_intrinsic
from cvpipe.asl.paths import get_path, path_exists, set_path, validate_path

pytestmark = pytest.mark.unit

PROPERTY = settings(
    derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

keys = st.text(st.characters(codec="utf-8", exclude_characters="\\'"), min_size=1, max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
steps = st.lists(keys | st.integers(-3, 5), min_size=1, max_size=4)


def reference_path(path_steps: list) -> str:
    return "$" + "".join(f"['{step}']" if isinstance(step, str) else f"[{step}]" for step in path_steps)


@PROPERTY
@given(documents, steps, documents)
def test_a_value_placed_at_a_reference_path_is_read_back_and_the_input_is_untouched(data, path_steps, value):
    path = reference_path(path_steps)
    before = copy.deepcopy(data)
    try:
        placed = set_path(data, path, value)
    except StatesError as error:
        assert error.error == "States.ResultPathMatchFailure"
        return
    finally:
        assert data == before
    assert get_path(path, placed) == value
    assert path_exists(path, placed)


@PROPERTY
@given(documents, st.text(max_size=20))
def test_any_text_as_a_path_is_valid_or_refused_with_a_states_error(data, text):
    problem = validate_path(text)
    assert problem is None or isinstance(problem, str)
    try:
        get_path(text, data)
    except StatesError as error:
        assert error.error == "States.Runtime"
    try:
        assert isinstance(path_exists(text, data), bool)
    except StatesError as error:
        assert problem is not None and error.error == "States.Runtime"


@PROPERTY
@given(documents)
def test_json_to_string_and_back_is_the_identity(value):
    assert evaluate_intrinsic("States.StringToJson(States.JsonToString($.v))", {"v": value}) == value
    assert json.loads(evaluate_intrinsic("States.JsonToString($.v)", {"v": value})) == value


@PROPERTY
@given(st.text(max_size=200))
def test_base64_round_trips_any_text(text):
    encoded = evaluate_intrinsic("States.Base64Encode($.t)", {"t": text})
    assert evaluate_intrinsic("States.Base64Decode($.e)", {"e": encoded}) == text


@PROPERTY
@given(st.lists(scalars, max_size=20), st.integers(1, 25))
def test_partitions_concatenate_to_the_array(items, size):
    chunks = evaluate_intrinsic("States.ArrayPartition($.a, $.n)", {"a": items, "n": size})
    assert [item for chunk in chunks for item in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in chunks) and all(
        len(chunk) == size for chunk in chunks[:-1]
    )


@PROPERTY
@given(st.lists(scalars, max_size=20))
def test_unique_is_idempotent_keeps_order_and_every_member(items):
    unique = evaluate_intrinsic("States.ArrayUnique($.a)", {"a": items})
    assert evaluate_intrinsic("States.ArrayUnique($.a)", {"a": unique}) == unique
    assert all(
        evaluate_intrinsic("States.ArrayContains($.a, $.x)", {"a": unique, "x": item}) for item in items
    )
    assert evaluate_intrinsic("States.ArrayLength($.a)", {"a": unique}) <= len(items)


@PROPERTY
@given(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1))
def test_math_add_is_integer_addition_or_a_states_error(a, b):
    try:
        total = evaluate_intrinsic("States.MathAdd($.a, $.b)", {"a": a, "b": b})
    except StatesError as error:
        assert error.error == "States.IntrinsicFailure"
        return
    assert total == a + b


@PROPERTY
@given(st.integers(-50, 50), st.integers(-50, 50), st.integers(-7, 7))
def test_array_range_runs_from_start_by_step_within_end(start, end, step):
    try:
        numbers = evaluate_intrinsic("States.ArrayRange($.s, $.e, $.d)", {"s": start, "e": end, "d": step})
    except StatesError as error:
        assert error.error == "States.IntrinsicFailure" and step == 0
        return
    assert numbers == list(range(start, end + (1 if step > 0 else -1), step))


@PROPERTY
@given(st.text(max_size=40))
def test_any_text_as_an_intrinsic_parses_or_is_refused_with_a_value_error(text):
    try:
        parse_intrinsic("States." + text)
    except ValueError:
        return
    try:
        evaluate_intrinsic("States." + text, {})
    except StatesError as error:
        assert error.error in ("States.IntrinsicFailure", "States.Runtime")


INDEFINITE = [
    "$..a",
    "$..a[*]",
    "$..*",
    "$..[0]",
    "$.*",
    "$[*]",
    "$.*.a",
    "$[*].a",
    "$..a.b",
    "$.a..b",
    "$[0,-1]",
    "$[1:3]",
    "$[::-1]",
    "$[-2:]",
    "$['a','b']",
    "$..['a','b']",
    "$.a[*][0]",
]
short_keys = st.sampled_from(["a", "b", "c"])
shallow_documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_keys, inner, max_size=3),
    max_leaves=16,
)


@PROPERTY
@given(shallow_documents, st.sampled_from(INDEFINITE))
def test_indefinite_paths_match_what_jsonpath_ng_finds_in_the_same_order(data, path):
    if path.startswith("$.a"):
        data = {"a": data}  # the definite prefix of an indefinite path must exist
    expected = [match.value for match in parse(path).find(data)]
    assert get_path(path, data) == expected
    assert path_exists(path, data) is bool(expected)
