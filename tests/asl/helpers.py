"""Helpers for the engine's tests: a VirtualClock engine with handlers given as plain functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cvpipe.asl import Engine, ExecutionResult, TaskRegistry, TaskRequest, VirtualClock


def registry(handlers: dict[str, Callable[[TaskRequest], Any]] | None = None) -> TaskRegistry:
    tasks = TaskRegistry()
    for resource, handler in (handlers or {}).items():
        tasks.register(resource, handler)
    return tasks


def machine(states: dict[str, Any], start_at: str | None = None, **top_level: Any) -> dict[str, Any]:
    """A definition from its states; StartAt defaults to the first one."""
    return {"StartAt": start_at or next(iter(states)), "States": states, **top_level}


def run(
    definition: dict[str, Any],
    input: Any = None,
    handlers: dict[str, Callable[[TaskRequest], Any]] | None = None,
    clock: VirtualClock | None = None,
    **kwargs: Any,
) -> ExecutionResult:
    engine = Engine(registry(handlers), clock or VirtualClock(), kwargs.pop("max_concurrency", None))
    return engine.run(definition, input, **kwargs)


def types(result: ExecutionResult) -> list[str]:
    return [event.type for event in result.history]
