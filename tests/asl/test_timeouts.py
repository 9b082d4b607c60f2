"""Task TimeoutSeconds, the execution's TimeoutSeconds (TIMED_OUT) and abort (ABORTED)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cvpipe.asl import Engine, VirtualClock

from .helpers import machine, registry, run, types

pytestmark = pytest.mark.unit

PATIENCE = 5


def test_task_running_past_its_timeout_fails_with_states_timeout_on_the_virtual_clock() -> None:
    clock = VirtualClock()

    def slow(request: Any) -> Any:
        clock.sleep(30, request.cancelled)  # 30 s of (virtual) work
        return "late"

    states = {"T": {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 10, "End": True}}
    result = run(machine(states), handlers={"slow": slow}, clock=clock)
    assert (result.status, result.error) == ("FAILED", "States.Timeout")
    assert types(result)[-2:] == ["TaskTimedOut", "ExecutionFailed"]


def test_a_blocked_task_is_cancelled_at_its_timeout() -> None:
    cancelled = threading.Event()

    def blocked(request: Any) -> Any:
        if request.cancelled.wait(PATIENCE):
            cancelled.set()
        return "never used"

    states = {
        "T": {
            "Type": "Task",
            "Resource": "blocked",
            "TimeoutSecondsPath": "$.limit",
            "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "Done"}],
            "End": True,
        },
        "Done": {"Type": "Succeed"},
    }
    started = time.monotonic()
    result = run(machine(states), {"limit": 1}, {"blocked": blocked})
    assert time.monotonic() - started < PATIENCE
    assert result.output["error"]["Error"] == "States.Timeout"
    assert cancelled.wait(PATIENCE)


def test_states_task_failed_does_not_catch_a_timeout() -> None:
    clock = VirtualClock()

    def slow(request: Any) -> Any:
        clock.sleep(5)
        return 1

    states = {
        "T": {
            "Type": "Task",
            "Resource": "slow",
            "TimeoutSeconds": 1,
            "Retry": [{"ErrorEquals": ["States.TaskFailed"]}],
            "End": True,
        }
    }
    result = run(machine(states), handlers={"slow": slow}, clock=clock)
    assert result.error == "States.Timeout" and types(result).count("TaskScheduled") == 1


def test_execution_timeout_seconds_times_the_execution_out() -> None:
    definition = machine({"W": {"Type": "Wait", "Seconds": 100, "End": True}}, TimeoutSeconds=60)
    clock = VirtualClock()
    result = run(definition, clock=clock)
    assert (result.status, result.output, result.error) == ("TIMED_OUT", None, "States.Timeout")
    assert clock.slept == [60]
    assert types(result)[-2:] == ["WaitStateAborted", "ExecutionTimedOut"]


def test_timeout_argument_overrides_the_definition() -> None:
    definition = machine({"W": {"Type": "Wait", "Seconds": 100, "End": True}}, TimeoutSeconds=1000)
    assert run(definition, timeout=10).status == "TIMED_OUT"
    assert run(machine({"W": {"Type": "Wait", "Seconds": 5, "End": True}}), timeout=10).status == "SUCCEEDED"


def test_retry_back_off_counts_against_the_execution_timeout() -> None:
    def fails(request: Any) -> Any:
        raise RuntimeError("no")

    states = {
        "T": {
            "Type": "Task",
            "Resource": "f",
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 50, "MaxAttempts": 5}],
            "End": True,
        }
    }
    assert run(machine(states, TimeoutSeconds=120), handlers={"f": fails}).status == "TIMED_OUT"


def test_abort_stops_a_running_execution_and_cancels_its_task() -> None:
    running, cancelled = threading.Event(), threading.Event()

    def blocked(request: Any) -> Any:
        running.set()
        if request.cancelled.wait(PATIENCE):
            cancelled.set()
        return "never used"

    engine = Engine(registry({"blocked": blocked}), VirtualClock())
    execution = engine.start(
        machine({"T": {"Type": "Task", "Resource": "blocked", "End": True}}), name="to-abort"
    )
    assert running.wait(PATIENCE)
    execution.abort(error="User.Stop", cause="enough")
    result = execution.wait(PATIENCE)
    assert (result.status, result.error, result.cause) == ("ABORTED", "User.Stop", "enough")
    assert types(result)[-2:] == ["TaskStateAborted", "ExecutionAborted"]
    assert cancelled.wait(PATIENCE)


def test_abort_reaches_map_iterations() -> None:
    running = threading.Barrier(3, timeout=PATIENCE)

    def blocked(request: Any) -> Any:
        running.wait()
        request.cancelled.wait(PATIENCE)

    processor = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "blocked", "End": True}}}
    engine = Engine(registry({"blocked": blocked}), VirtualClock())
    execution = engine.start(machine({"M": {"Type": "Map", "ItemProcessor": processor, "End": True}}), [1, 2])
    running.wait()
    execution.abort()
    result = execution.wait(PATIENCE)
    assert result.status == "ABORTED"
    assert types(result).count("MapIterationAborted") == 2 and "MapStateAborted" in types(result)


def test_wait_returns_while_running_raise_timeout_error() -> None:
    release = threading.Event()
    engine = Engine(registry({"hold": lambda request: release.wait(PATIENCE)}), VirtualClock())
    execution = engine.start(machine({"T": {"Type": "Task", "Resource": "hold", "End": True}}))
    try:
        execution.wait(0.01)
    except TimeoutError:
        pass
    else:
        raise AssertionError("wait() returned while the execution was running")
    release.set()
    assert execution.wait(PATIENCE).status == "SUCCEEDED"
