"""Retry and Catch: how a Task, Parallel or Map state recovers from the errors it reports."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ALL, DATA_LIMIT_EXCEEDED, RUNTIME, TASK_FAILED, TIMEOUT, StatesError

T = TypeVar("T")


def matches(error_equals: list[str], error: str) -> bool:
    """Whether an ErrorEquals list names ``error``.

    As in Step Functions: States.Runtime is terminal (never retried or caught); the wildcards
    (States.ALL, and States.TaskFailed which spares States.Timeout) do not match
    States.DataLimitExceeded, which only its own name catches.
    """
    if error == RUNTIME:
        return False
    if error in error_equals:
        return True
    if error == DATA_LIMIT_EXCEEDED:
        return False
    return ALL in error_equals or (TASK_FAILED in error_equals and error != TIMEOUT)


@dataclass
class Retrier:
    error_equals: list[str]
    interval_seconds: float = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter_strategy: str = "NONE"
    attempts: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Retrier:
        return cls(
            error_equals=spec["ErrorEquals"],
            interval_seconds=spec.get("IntervalSeconds", 1),
            max_attempts=spec.get("MaxAttempts", 3),
            backoff_rate=spec.get("BackoffRate", 2.0),
            max_delay_seconds=spec.get("MaxDelaySeconds"),
            jitter_strategy=spec.get("JitterStrategy", "NONE"),
        )

    def next_delay(self) -> float | None:
        """Count one more attempt; the seconds to wait before it, or None once attempts are spent."""
        if self.attempts >= self.max_attempts:
            return None
        delay = self.interval_seconds * self.backoff_rate**self.attempts
        self.attempts += 1
        if self.max_delay_seconds is not None:
            delay = min(delay, self.max_delay_seconds)
        if self.jitter_strategy == "FULL":
            delay = random.uniform(0, delay)
        return delay


def with_retries(
    retry_spec: list[dict[str, Any]],
    attempt: Callable[[int], T],
    sleep: Callable[[float], None],
) -> T:
    """Call ``attempt(retry_count)`` until it succeeds or no Retrier allows another try.

    Only the first Retrier whose ErrorEquals matches the error applies, and each Retrier counts its
    own attempts across the state's retries. The last error is re-raised.
    """
    retriers = [Retrier.from_spec(spec) for spec in retry_spec]
    retry_count = 0
    while True:
        try:
            return attempt(retry_count)
        except StatesError as failure:
            retrier = next((r for r in retriers if matches(r.error_equals, failure.error)), None)
            delay = retrier.next_delay() if retrier else None
            if delay is None:
                raise
            sleep(delay)
            retry_count += 1


def find_catcher(catch_spec: list[dict[str, Any]], failure: StatesError) -> dict[str, Any] | None:
    """The first Catcher whose ErrorEquals matches the error, if any."""
    return next((c for c in catch_spec if matches(c["ErrorEquals"], failure.error)), None)


def error_output(failure: StatesError) -> dict[str, str]:
    """The value a Catcher passes on (at its ResultPath)."""
    return {"Error": failure.error, "Cause": failure.cause}
