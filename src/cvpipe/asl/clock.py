"""Time for Wait states, retry back-off and timestamps: real by default, virtual in tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def thread_slept(self) -> float:
        """Real waits are measured by the caller: no separate account is kept."""
        return 0.0

    def sleep(self, seconds: float, cancelled: threading.Event | None = None) -> bool:
        """Wait ``seconds``; return False if ``cancelled`` was set first."""
        if seconds <= 0:
            return not (cancelled and cancelled.is_set())
        return not (cancelled or threading.Event()).wait(seconds)


class VirtualClock:
    """A clock whose sleeps return at once and move its time forward, so waits cost nothing.

    Concurrent lines of execution share its time, so each thread's own sleeps are also counted
    apart (``thread_slept``): a task's timeout counts what its own handler slept, not what a Wait
    in a sibling branch did meanwhile.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self.slept: list[float] = []
        self._by_thread: dict[int, float] = {}

    def thread_slept(self) -> float:
        """Virtual seconds slept so far by the calling thread."""
        with self._lock:
            return self._by_thread.get(threading.get_ident(), 0.0)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float, cancelled: threading.Event | None = None) -> bool:
        with self._lock:
            self.slept.append(seconds)
            thread = threading.get_ident()
            self._by_thread[thread] = self._by_thread.get(thread, 0.0) + max(seconds, 0)
            self._now += timedelta(seconds=max(seconds, 0))
        return not (cancelled and cancelled.is_set())
