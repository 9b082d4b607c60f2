"""Map and Parallel: item context, real thread parallelism, concurrency bounds, order, failure."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cvpipe.asl import StatesError

from .helpers import machine, run, types

pytestmark = pytest.mark.unit

BARRIER_TIMEOUT = 5


class Gauge:
    """Counts how many handlers run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1


def task_processor(resource: str = "work") -> dict:
    return {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "End": True}}}


def map_state(**fields: Any) -> dict:
    return {"Type": "Map", "ItemProcessor": task_processor(), "End": True, **fields}


def test_item_selector_sees_map_item_index_and_value_and_results_keep_item_order() -> None:
    def work(request: Any) -> Any:
        time.sleep(0.01 * (3 - request.parameters["index"]))  # later items finish first
        return request.parameters

    selector = {"index.$": "$$.Map.Item.Index", "value.$": "$$.Map.Item.Value", "shared.$": "$.shared"}
    state = map_state(ItemsPath="$.items", ItemSelector=selector, ResultPath="$.results")
    result = run(machine({"M": state}), {"items": ["a", "b", "c"], "shared": 1}, {"work": work})
    assert result.output["results"] == [
        {"index": 0, "value": "a", "shared": 1},
        {"index": 1, "value": "b", "shared": 1},
        {"index": 2, "value": "c", "shared": 1},
    ]


def test_map_item_is_not_in_the_context_of_iteration_states() -> None:
    # AWS: "You must define parameters from the context object in the Parameters block of the main Map
    # state, not within the states included in the Iterator section."
    processor = {
        "StartAt": "P",
        "States": {"P": {"Type": "Pass", "Parameters": {"i.$": "$$.Map.Item.Index"}, "End": True}},
    }
    result = run(machine({"M": {"Type": "Map", "ItemProcessor": processor, "End": True}}), ["x", "y"])
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert "$$.Map.Item.Index" in result.cause


def test_legacy_iterator_and_parameters() -> None:
    state = {
        "Type": "Map",
        "ItemsPath": "$.xs",
        "Parameters": {"x.$": "$$.Map.Item.Value", "n.$": "$.n"},
        "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "ResultSelector": {"count.$": "States.ArrayLength($)", "all.$": "$"},
        "End": True,
    }
    result = run(machine({"M": state}), {"xs": [1, 2], "n": 9})
    assert result.output == {"count": 2, "all": [{"x": 1, "n": 9}, {"x": 2, "n": 9}]}


def test_empty_items_give_an_empty_list() -> None:
    assert run(machine({"M": map_state()}), []).output == []


def test_items_path_must_select_an_array() -> None:
    result = run(machine({"M": map_state(ItemsPath="$.x")}), {"x": 1})
    assert result.error == "States.Runtime" and "array" in result.cause


def test_unbounded_map_runs_iterations_in_parallel_threads() -> None:
    barrier = threading.Barrier(4, timeout=BARRIER_TIMEOUT)

    def work(request: Any) -> Any:
        barrier.wait()  # only returns if all four iterations run at once
        return request.parameters

    result = run(machine({"M": map_state(MaxConcurrency=0)}), [1, 2, 3, 4], {"work": work})
    assert result.output == [1, 2, 3, 4]


def test_max_concurrency_is_respected() -> None:
    gauge, pair = Gauge(), threading.Barrier(2, timeout=BARRIER_TIMEOUT)

    def work(request: Any) -> Any:
        with gauge:
            pair.wait()  # two at a time must be possible
            time.sleep(0.005)
        return request.parameters

    result = run(machine({"M": map_state(MaxConcurrency=2)}), list(range(6)), {"work": work})
    assert result.output == list(range(6))
    assert gauge.peak == 2


def test_max_concurrency_path_and_engine_cap() -> None:
    gauge = Gauge()

    def work(request: Any) -> Any:
        with gauge:
            time.sleep(0.005)
        return request.parameters

    state = map_state(ItemsPath="$.items", MaxConcurrencyPath="$.limit")
    result = run(
        machine({"M": state}), {"items": list(range(5)), "limit": 3}, {"work": work}, max_concurrency=1
    )
    assert result.output == list(range(5)) and gauge.peak == 1


def test_a_failed_iteration_fails_the_map_and_cancels_the_others() -> None:
    started, cancelled = [], []
    both_running = threading.Barrier(2, timeout=BARRIER_TIMEOUT)

    def work(request: Any) -> Any:
        started.append(request.parameters)
        both_running.wait()
        if request.parameters == 0:
            raise StatesError("Item.Failed", "item 0")
        cancelled.append(request.cancelled.wait(BARRIER_TIMEOUT))
        return request.parameters

    result = run(machine({"M": map_state(MaxConcurrency=2)}), list(range(6)), {"work": work})
    assert (result.status, result.error, result.cause) == ("FAILED", "Item.Failed", "item 0")
    assert sorted(started) == [0, 1]  # no iteration starts once one has failed
    event_types = types(result)
    assert event_types.count("MapIterationFailed") == 1
    assert event_types.count("MapIterationAborted") == 1
    assert "MapStateFailed" in event_types and "TaskStateAborted" in event_types
    deadline = time.monotonic() + BARRIER_TIMEOUT
    while not cancelled and time.monotonic() < deadline:
        time.sleep(0.01)  # the abandoned task thread sees the cancellation
    assert cancelled == [True]


def test_parallel_runs_branches_concurrently_with_the_same_input_and_keeps_branch_order() -> None:
    barrier = threading.Barrier(3, timeout=BARRIER_TIMEOUT)

    def work(request: Any) -> Any:
        barrier.wait()
        return request.parameters

    def branch(tag: str) -> dict:
        return {
            "StartAt": f"T{tag}",
            "States": {
                f"T{tag}": {
                    "Type": "Task",
                    "Resource": "work",
                    "Parameters": {"tag": tag, "n.$": "$.n"},
                    "End": True,
                }
            },
        }

    state = {
        "Type": "Parallel",
        "Parameters": {"n.$": "$.value"},
        "Branches": [branch("a"), branch("b"), branch("c")],
        "ResultSelector": {"tags.$": "$[*].tag"},
        "ResultPath": "$.out",
        "End": True,
    }
    result = run(machine({"P": state}), {"value": 5}, {"work": work})
    assert result.output == {"value": 5, "out": {"tags": ["a", "b", "c"]}}


def test_a_failed_branch_fails_the_parallel_state_with_its_error_and_cancels_the_others() -> None:
    cancelled = threading.Event()

    def wait_for_cancel(request: Any) -> Any:
        request.cancelled.wait(BARRIER_TIMEOUT)
        cancelled.set()
        return "late"

    branches = [
        {"StartAt": "W", "States": {"W": {"Type": "Task", "Resource": "slow", "End": True}}},
        {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Branch.Bad", "Cause": "b"}}},
    ]
    result = run(
        machine({"P": {"Type": "Parallel", "Branches": branches, "End": True}}), {}, {"slow": wait_for_cancel}
    )
    assert (result.status, result.error) == ("FAILED", "Branch.Bad")
    assert cancelled.wait(BARRIER_TIMEOUT)
    assert "ParallelStateFailed" in types(result)


def test_nested_map_in_parallel_in_map() -> None:
    inner_map = {
        "Type": "Map",
        "ItemsPath": "$.row",
        "ItemProcessor": {
            "StartAt": "Sq",
            "States": {"Sq": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, 1)"}, "End": True}},
        },
        "End": True,
    }
    parallel = {
        "Type": "Parallel",
        "Branches": [
            {"StartAt": "Inner", "States": {"Inner": inner_map}},
            {
                "StartAt": "Len",
                "States": {
                    "Len": {"Type": "Pass", "Parameters": {"n.$": "States.ArrayLength($.row)"}, "End": True}
                },
            },
        ],
        "End": True,
    }
    outer = {
        "Type": "Map",
        "ItemSelector": {"row.$": "$$.Map.Item.Value"},
        "ItemProcessor": {"StartAt": "Par", "States": {"Par": parallel}},
        "End": True,
    }
    result = run(machine({"Outer": outer}), [[1, 2], [3]])
    assert result.output == [[[{"v": 2}, {"v": 3}], {"n": 2}], [[{"v": 4}], {"n": 1}]]


def test_engine_cap_applies_to_an_unbounded_map_and_inline_maps_run_at_most_40_at_once() -> None:
    gauge = Gauge()
    first_forty = threading.Barrier(40, timeout=BARRIER_TIMEOUT)

    def work(request: Any) -> Any:
        with gauge:
            if request.parameters < 40:
                first_forty.wait()
        return request.parameters

    result = run(machine({"M": map_state()}), list(range(50)), {"work": work})
    assert result.output == list(range(50)) and gauge.peak == 40

    capped = Gauge()

    def capped_work(request: Any) -> Any:
        with capped:
            time.sleep(0.002)
        return request.parameters

    result = run(machine({"M": map_state()}), list(range(6)), {"work": capped_work}, max_concurrency=2)
    assert result.output == list(range(6)) and capped.peak <= 2
