"""Time for Wait states, retry back-off and timestamps: real by default, virtual in tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, cancelled: threading.Event | None = None) -> bool:
        """Wait ``seconds``; return False if ``cancelled`` was set first."""
        if seconds <= 0:
            return not (cancelled and cancelled.is_set())
        return not (cancelled or threading.Event()).wait(seconds)


class VirtualClock:
    """A clock whose sleeps return at once and move its time forward, so waits cost nothing."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float, cancelled: threading.Event | None = None) -> bool:
        with self._lock:
            self.slept.append(seconds)
            self._now += timedelta(seconds=max(seconds, 0))
        return not (cancelled and cancelled.is_set())
