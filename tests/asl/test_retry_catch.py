"""Retry (back-off on the clock, $$.State.RetryCount) and Catch (error output, ResultPath)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cvpipe.asl import StatesError, VirtualClock

from .helpers import machine, run, types

pytestmark = pytest.mark.unit


class Flaky:
    """Fails with ``error`` the first ``failures`` times; records RetryCount on every attempt."""

    def __init__(self, failures: int, error: str = "Flaky.Error") -> None:
        self.failures = failures
        self.error = error
        self.retry_counts: list[int] = []

    def __call__(self, request: Any) -> Any:
        self.retry_counts.append(request.context["State"]["RetryCount"])
        if len(self.retry_counts) <= self.failures:
            raise StatesError(self.error, f"attempt {len(self.retry_counts)}")
        return {"attempts": len(self.retry_counts)}


def task(retry: list[dict] | None = None, catch: list[dict] | None = None, **fields: Any) -> dict:
    state = {"Type": "Task", "Resource": "flaky", "End": True, **fields}
    if retry is not None:
        state["Retry"] = retry
    if catch is not None:
        state["Catch"] = catch
    return state


def test_retry_defaults_interval_1_backoff_2_max_attempts_3() -> None:
    clock, flaky = VirtualClock(), Flaky(failures=3)
    result = run(
        machine({"T": task([{"ErrorEquals": ["States.ALL"]}])}), handlers={"flaky": flaky}, clock=clock
    )
    assert result.output == {"attempts": 4}
    assert flaky.retry_counts == [0, 1, 2, 3]
    assert clock.slept == [1, 2, 4]


def test_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock, flaky = VirtualClock(), Flaky(failures=10)
    retry = [
        {
            "ErrorEquals": ["Flaky.Error"],
            "IntervalSeconds": 3,
            "BackoffRate": 2,
            "MaxAttempts": 4,
            "MaxDelaySeconds": 10,
        }
    ]
    result = run(machine({"T": task(retry)}), handlers={"flaky": flaky}, clock=clock)
    assert (result.status, result.error, result.cause) == ("FAILED", "Flaky.Error", "attempt 5")
    assert clock.slept == [3, 6, 10, 10]


def test_max_attempts_zero_never_retries() -> None:
    flaky = Flaky(failures=1)
    result = run(
        machine({"T": task([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}])}), handlers={"flaky": flaky}
    )
    assert result.status == "FAILED" and flaky.retry_counts == [0]


def test_full_jitter_stays_within_the_backoff() -> None:
    clock = VirtualClock()
    retry = [
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 5, "JitterStrategy": "FULL"}
    ]
    run(machine({"T": task(retry)}), handlers={"flaky": Flaky(failures=5)}, clock=clock)
    bounds = [2, 4, 8, 16, 32]
    assert len(clock.slept) == 5
    assert all(0 <= slept <= bound for slept, bound in zip(clock.slept, bounds, strict=True))


def test_only_the_first_matching_retrier_applies_and_each_counts_its_own_attempts() -> None:
    clock = VirtualClock()
    errors = iter(["A", "B", "A", "B", "A"])

    def alternating(request: Any) -> Any:
        error = next(errors, None)
        if error:
            raise StatesError(error)
        return "done"

    retry = [
        {"ErrorEquals": ["A"], "IntervalSeconds": 1, "MaxAttempts": 2},
        {"ErrorEquals": ["A", "B"], "IntervalSeconds": 10, "MaxAttempts": 5},
    ]
    result = run(machine({"T": task(retry, Resource="alt")}), handlers={"alt": alternating}, clock=clock)
    # A -> retrier 0 (1 s), B -> retrier 1 (10 s), A -> retrier 0 (2 s), B -> retrier 1 (20 s),
    # A -> retrier 0 is spent: the state fails even though retrier 1 would still match.
    assert clock.slept == [1, 10, 2, 20]
    assert (result.status, result.error) == ("FAILED", "A")


@pytest.mark.parametrize(
    ("error", "error_equals", "caught"),
    [
        ("States.Timeout", ["States.TaskFailed"], False),
        ("Custom.Error", ["States.TaskFailed"], True),
        ("States.Timeout", ["States.ALL"], True),
        ("States.Timeout", ["States.Timeout"], True),
        ("States.Runtime", ["States.ALL"], False),
        ("States.Runtime", ["States.Runtime"], False),
        ("States.DataLimitExceeded", ["States.TaskFailed"], False),
        ("Other", ["Custom.Error"], False),
    ],
)
def test_error_matching(error: str, error_equals: list[str], caught: bool) -> None:
    def fails(request: Any) -> Any:
        raise StatesError(error, "why")

    states = {
        "T": task(catch=[{"ErrorEquals": error_equals, "Next": "Caught"}], Resource="fails"),
        "Caught": {"Type": "Succeed"},
    }
    assert run(machine(states), handlers={"fails": fails}).status == ("SUCCEEDED" if caught else "FAILED")


def test_catch_places_error_output_at_its_result_path_in_the_raw_input() -> None:
    states = {
        "T": task(
            catch=[{"ErrorEquals": ["Flaky.Error"], "ResultPath": "$.error", "Next": "Handled"}],
            OutputPath="$.never",
        ),
        "Handled": {"Type": "Pass", "End": True},
    }
    result = run(machine(states), {"keep": 1}, handlers={"flaky": Flaky(failures=1)})
    assert result.output == {"keep": 1, "error": {"Error": "Flaky.Error", "Cause": "attempt 1"}}


def test_catch_result_path_defaults_to_replacing_the_input_and_null_discards() -> None:
    handled = {"Type": "Pass", "End": True}
    states = {"T": task(catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}]), "H": handled}
    assert run(machine(states), {"keep": 1}, handlers={"flaky": Flaky(1)}).output == {
        "Error": "Flaky.Error",
        "Cause": "attempt 1",
    }
    states = {
        "T": task(catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "H"}]),
        "H": handled,
    }
    assert run(machine(states), {"keep": 1}, handlers={"flaky": Flaky(1)}).output == {"keep": 1}


def test_catch_applies_once_retries_are_spent() -> None:
    clock, flaky = VirtualClock(), Flaky(failures=5)
    states = {
        "T": task(
            [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 2}],
            [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
        ),
        "H": {"Type": "Pass", "End": True},
    }
    result = run(machine(states), handlers={"flaky": flaky}, clock=clock)
    assert result.status == "SUCCEEDED" and flaky.retry_counts == [0, 1, 2] and clock.slept == [1, 2]
    assert types(result).count("TaskFailed") == 3 and "TaskStateExited" in types(result)


def test_handler_exception_is_caught_as_task_failed() -> None:
    def broken(request: Any) -> Any:
        raise KeyError("k")

    states = {
        "T": task(catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "H"}], Resource="broken"),
        "H": {"Type": "Succeed"},
    }
    result = run(machine(states), handlers={"broken": broken})
    assert result.output == {"Error": "States.TaskFailed", "Cause": "KeyError: 'k'"}


def test_retry_reruns_a_parallel_state_whole() -> None:
    flaky = Flaky(failures=1)
    branch = {"StartAt": "T", "States": {"T": task()}}
    states = {
        "P": {
            "Type": "Parallel",
            "Branches": [branch],
            "Retry": [{"ErrorEquals": ["States.ALL"]}],
            "End": True,
        }
    }
    result = run(machine(states), handlers={"flaky": flaky})
    assert result.output == [{"attempts": 2}]
    assert flaky.retry_counts == [0, 0]  # a retry of the Parallel state starts fresh task states


def test_catch_on_a_map_state() -> None:
    processor = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Item.Bad", "Cause": "item"}}}
    states = {
        "M": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": processor,
            "Catch": [{"ErrorEquals": ["Item.Bad"], "ResultPath": "$.err", "Next": "H"}],
            "End": True,
        },
        "H": {"Type": "Pass", "End": True},
    }
    result = run(machine(states), {"items": [1, 2]})
    assert result.output == {"items": [1, 2], "err": {"Error": "Item.Bad", "Cause": "item"}}
    assert "MapStateFailed" in types(result)


def test_retry_count_is_visible_to_parameters() -> None:
    seen = []

    def spy(request: Any) -> Any:
        seen.append(request.parameters["try"])
        if len(seen) < 3:
            raise StatesError("Again")
        return "ok"

    state = task([{"ErrorEquals": ["Again"]}], Resource="spy", Parameters={"try.$": "$$.State.RetryCount"})
    assert run(machine({"T": state}), handlers={"spy": spy}).output == "ok"
    assert seen == [0, 1, 2]


def test_error_output_cause_is_json_text_for_structured_causes() -> None:
    def structured(request: Any) -> Any:
        raise StatesError("Fn.Error", json.dumps({"errorMessage": "m"}))

    states = {
        "T": task(catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}], Resource="s"),
        "H": {"Type": "Succeed"},
    }
    result = run(machine(states), handlers={"s": structured})
    assert json.loads(result.output["Cause"]) == {"errorMessage": "m"}
