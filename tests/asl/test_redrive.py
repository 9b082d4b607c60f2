"""Redrive by replay: a redriven execution reruns only the tasks that did not finish."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from cvpipe.asl import Engine, StatesError, TaskRequest, VirtualClock
from cvpipe.asl.redrive import TaskJournal

from .helpers import machine, registry

pytestmark = pytest.mark.unit

# A Map of one task per item, then a task on the Map's results; the task names its work by the
# redrive count, as job names must.
DEFINITION = machine(
    {
        "Each": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {
                "StartAt": "Work",
                "States": {
                    "Work": {
                        "Type": "Task",
                        "Resource": "work",
                        "Parameters": {
                            "item.$": "$",
                            "name.$": "States.Format('w{}-r{}', $, $$.Execution.RedriveCount)",
                        },
                        "Catch": [{"ErrorEquals": ["Data.Bad"], "ResultPath": "$", "Next": "Skipped"}],
                        "End": True,
                    },
                    "Skipped": {"Type": "Pass", "Result": "skipped", "End": True},
                },
            },
            "ResultPath": "$.done",
            "Next": "Sum",
        },
        "Sum": {"Type": "Task", "Resource": "sum", "Parameters": {"done.$": "$.done"}, "End": True},
    }
)
INPUT = {"items": [1, 3, 4, 2]}


class Services:
    """Counts calls; ``work`` fails with Data.Bad for item 3 (caught) and, while ``broken`` holds
    an item, with an uncaught error for it."""

    def __init__(self, broken: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: Counter[Any] = Counter()
        self.names: list[str] = []
        self.broken = set(broken)

    def work(self, request: TaskRequest) -> Any:
        item = request.parameters["item"]
        self.calls[item] += 1
        self.names.append(request.parameters["name"])
        if item == 3:
            raise StatesError("Data.Bad", "item 3 is bad")
        if item in self.broken:
            raise StatesError("Host.Lost", f"item {item}: the host went away")
        return {"squared": item * item}

    def sum(self, request: TaskRequest) -> Any:
        self.calls["sum"] += 1
        return sum(d["squared"] for d in request.parameters["done"] if isinstance(d, dict))

    def engine(self) -> Engine:
        # One iteration at a time: the broken last item fails after the others have finished.
        return Engine(registry({"work": self.work, "sum": self.sum}), VirtualClock(), max_concurrency=1)


def journaled(entries: list[dict[str, Any]]) -> TaskJournal:
    return TaskJournal(list(entries), entries.append)


def test_a_redrive_reruns_only_the_failed_iteration_and_gives_the_clean_result() -> None:
    clean = Services().engine().run(DEFINITION, INPUT)
    assert clean.status == "SUCCEEDED" and clean.output == 1 + 4 + 16

    services = Services(broken={2})
    entries: list[dict[str, Any]] = []
    first = services.engine().run(DEFINITION, INPUT, journal=journaled(entries))
    assert first.status == "FAILED" and first.error == "Host.Lost"

    services.broken.clear()
    services.calls.clear()
    started = datetime(2026, 1, 2, tzinfo=UTC)
    redriven = services.engine().run(
        DEFINITION, INPUT, journal=journaled(entries), redrive_count=1, start_time=started
    )
    assert redriven.status == "SUCCEEDED"
    assert redriven.output == clean.output
    # Items 1 and 4 succeeded and item 3's failure was caught: only item 2 and what followed ran again.
    assert services.calls == Counter({2: 1, "sum": 1})
    assert services.names[-1] == "w2-r1"
    assert redriven.history[0].type == "ExecutionRedriven"
    assert [e.type for e in redriven.history].count("TaskReplayed") == 3


def test_an_aborted_execution_redriven_keeps_what_finished() -> None:
    release, waiting = threading.Event(), threading.Event()
    services = Services()

    def work(request: TaskRequest) -> Any:
        if request.parameters["item"] == 4 and not release.is_set():
            waiting.set()
            release.wait(5)  # still running when the execution is aborted
            raise StatesError("Host.Lost", "stopped")
        return services.work(request)

    entries: list[dict[str, Any]] = []
    engine = Engine(registry({"work": work, "sum": services.sum}), VirtualClock())
    execution = engine.start(DEFINITION, INPUT, journal=journaled(entries))
    assert waiting.wait(5)
    while sum(services.calls.values()) < 3:  # items 1, 3 and 2 done, item 4 running
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)  # their outcomes recorded
    execution.abort("Stopped", "by the test")
    assert execution.wait(5).status == "ABORTED"
    release.set()

    services.calls.clear()
    redriven = engine.run(
        DEFINITION, INPUT, journal=journaled(entries), redrive_count=1, start_time=datetime.now(UTC)
    )
    assert redriven.status == "SUCCEEDED" and redriven.output == 1 + 4 + 16
    assert services.calls == Counter({4: 1, "sum": 1})


def test_a_changed_input_is_not_taken_from_the_journal() -> None:
    services = Services()
    entries: list[dict[str, Any]] = []
    services.engine().run(DEFINITION, INPUT, journal=journaled(entries))
    services.calls.clear()
    result = services.engine().run(
        DEFINITION,
        {"items": [1, 5, 4, 2]},
        journal=journaled(entries),
        redrive_count=1,
        start_time=datetime.now(UTC),
    )
    assert result.output == 1 + 4 + 25 + 16
    assert services.calls == Counter({5: 1, "sum": 1})


def test_each_entry_of_a_state_in_a_loop_has_its_own_outcome() -> None:
    calls: list[int] = []

    def count(request: TaskRequest) -> int:
        calls.append(1)
        return len(calls)

    loop = machine(
        {
            "Count": {"Type": "Task", "Resource": "count", "ResultPath": "$.n", "Next": "Again"},
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericLessThan": 3, "Next": "Reset"}],
                "Default": "Done",
            },
            "Reset": {"Type": "Pass", "Result": {}, "Next": "Count"},
            "Done": {"Type": "Succeed"},
        }
    )
    entries: list[dict[str, Any]] = []
    engine = Engine(registry({"count": count}), VirtualClock())
    assert engine.run(loop, {}, journal=journaled(entries)).output == {"n": 3}
    calls.clear()
    assert engine.run(
        loop, {}, journal=journaled(entries), redrive_count=1, start_time=datetime.now(UTC)
    ).output == {"n": 3}
    assert calls == []


def test_the_redrive_keeps_the_start_time_and_counts_redrives() -> None:
    seen: list[dict[str, Any]] = []
    engine = Engine(
        registry({"t": lambda request: seen.append(request.context["Execution"])}), VirtualClock()
    )
    definition = machine({"T": {"Type": "Task", "Resource": "t", "End": True}})
    started = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    engine.run(definition, {}, name="x", redrive_count=2, start_time=started)
    assert seen[0]["RedriveCount"] == 2
    assert seen[0]["StartTime"].startswith("2026-03-04T05:06:07")
    assert "RedriveTime" in seen[0]


def distributed(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with its Map's iterations run as child executions (a Distributed Map)."""
    each = dict(definition["States"]["Each"])
    each["ItemProcessor"] = {
        **each["ItemProcessor"],
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
    }
    return {**definition, "States": {**definition["States"], "Each": each}}


def test_a_distributed_maps_children_are_redriven_like_inline_iterations() -> None:
    """Redriving a Map Run reruns only its children's unsuccessful work: a child's tasks are
    journaled at places of their own (the Map's entry and the item's index), as an iteration's are.
    Their events reach ``on_child_event`` with the child's ARN, not the execution's history."""
    definition = distributed(DEFINITION)
    services = Services(broken={2})
    entries: list[dict[str, Any]] = []
    seen: list[tuple[str, str]] = []
    first = services.engine().run(
        definition,
        INPUT,
        journal=journaled(entries),
        on_child_event=lambda arn, event: seen.append((arn, event.type)),
    )
    assert first.status == "FAILED" and first.error == "States.ExceedToleratedFailureThreshold"
    assert len({arn for arn, _ in seen}) == 4 and all("/Each:" in arn for arn, _ in seen)
    assert [event for _, event in seen].count("TaskScheduled") == 4
    assert "TaskScheduled" not in {event.type for event in first.history}

    services.broken.clear()
    services.calls.clear()
    redriven = services.engine().run(
        definition, INPUT, journal=journaled(entries), redrive_count=1, start_time=datetime.now(UTC)
    )
    assert redriven.status == "SUCCEEDED" and redriven.output == 1 + 4 + 16
    assert services.calls == Counter({2: 1, "sum": 1})
