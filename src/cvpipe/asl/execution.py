"""Execution plumbing: what the states run on, apart from what the states mean.

A ``Run`` is what every line of one execution shares (task registry, clock, history, deadline); a
``Lane`` is one sequential line of execution (the whole run, a Parallel branch or a Map iteration)
with its own chain of history events and its own cancellation ``Scope``; ``run_concurrently`` runs
the lanes of a Parallel or Map on threads, the first failure cancelling the rest. Lanes and task
handlers run on ``THREADS``, daemon threads kept for reuse.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .callbacks import TaskTokens
from .clock import RealClock, VirtualClock
from .distributed import MapRun, ObjectStorage
from .history import Event, History, Trace, text_details, timestamp_text, to_json_text
from .redrive import TaskJournal
from .tasks import TaskRegistry
from .variables import Context, Variables

Clock = RealClock | VirtualClock


class Cancelled(Exception):
    """Unwinds a lane whose scope was cancelled: the execution was aborted or timed out, or a
    sibling Map iteration or Parallel branch failed. Not a StatesError, so Retry and Catch never see it.

    ``finished`` holds the result of a task that completed as its lane was being stopped."""

    def __init__(self, *finished: Any) -> None:
        super().__init__()
        self.finished = finished


class Scope:
    """A cancellable region of an execution; cancelling it cancels every scope opened inside it."""

    def __init__(self, parent: Scope | None = None) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._listeners: dict[int, Callable[[], None]] = {}
        self._next_key = 0
        self._detach = parent.on_cancel(self.cancel) if parent else None

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def on_cancel(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` when the scope is cancelled (at once if it already is); returns a remover."""
        with self._lock:
            if not self.event.is_set():
                key = self._next_key
                self._next_key += 1
                self._listeners[key] = listener

                def remove() -> None:
                    with self._lock:
                        self._listeners.pop(key, None)

                return remove
        listener()
        return lambda: None

    def cancel(self) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.event.set()
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener()

    def close(self) -> None:
        """Stop listening to the parent scope (the region has finished)."""
        if self._detach:
            self._detach()


@dataclass
class Run:
    """What every lane of one execution shares."""

    tasks: TaskRegistry
    clock: Clock
    history: History
    context: dict[str, Any]
    """The execution-wide part of ``$$``: Execution and StateMachine."""
    region: str
    max_concurrency: int | None
    deadline: datetime | None
    tokens: TaskTokens = field(default_factory=TaskTokens)
    objects: ObjectStorage | None = None
    """Where a Distributed Map reads items and writes results."""
    map_runs: list[MapRun] = field(default_factory=list)
    journal: TaskJournal | None = None
    """Where Task outcomes are recorded, and recalled when the execution is redriven."""
    on_child_event: Callable[[str, Event], None] | None = None
    """Called with (child execution ARN, event) for each event of a Distributed Map's child executions."""
    root: Scope = field(default_factory=Scope)
    timed_out: threading.Event = field(default_factory=threading.Event)
    stop_grace: float = 0.0
    """Seconds that running tasks get to end once the execution is aborted (see ``Execution.abort``)."""
    parent: Run | None = None
    """The execution whose Distributed Map started this one as a child execution."""

    def grace(self) -> float:
        """The stop grace of the execution that was aborted: this one's, or the one that started it."""
        return self.parent.grace() if self.parent is not None else self.stop_grace

    def expire(self) -> None:
        """The execution's TimeoutSeconds has passed: stop everything (unless it was aborted already)."""
        if not self.root.cancelled:
            self.timed_out.set()
            self.root.cancel()

    def seconds_left(self) -> float | None:
        if self.deadline is None:
            return None
        return (self.deadline - self.clock.now()).total_seconds()


class Lane:
    """One sequential line of execution: the whole run, a Parallel branch or a Map iteration."""

    def __init__(
        self, run: Run, scope: Scope, trace: Trace, variables: Variables | None = None, path: str = ""
    ) -> None:
        self.run = run
        self.scope = scope
        self.trace = trace
        self.variables = variables or Variables()
        self._last_output: tuple[Any, str] | None = None
        self.path = path
        """Where the lane is in the execution, the same in every attempt: "" for the top level."""
        self.place = path
        """The state entry the lane is in: its path, the state's name and how often it was entered."""
        self._entries: dict[str, int] = {}
        self._assigned: dict[str, str] = {}

    def enter(self, state_name: str) -> None:
        count = self._entries.get(state_name, 0)
        self._entries[state_name] = count + 1
        self.place = f"{self.path}/{state_name}#{count}"
        self._assigned = {}

    def assign(self, values: dict[str, Any]) -> None:
        """Store the current state's Assign; its ``StateExited`` event reports the values."""
        self._assigned = self.variables.assign(values)

    def emit(self, event_type: str, details: dict[str, Any] | None = None, *, final: bool = False) -> Event:
        return self.trace.emit(event_type, details, final=final)

    def json_text(self, value: Any) -> str:
        """``value``'s JSON text. A state's input is most often the output that the lane's previous
        state has just recorded (or the execution's input), and an execution's output its last
        state's: that text is reused (payloads are never mutated)."""
        last = self._last_output
        return last[1] if last is not None and last[0] is value else to_json_text(value)

    def recorded(self, value: Any, text: str) -> None:
        """``text`` of ``value`` is in the history: the state that ``value`` is given to reuses it."""
        self._last_output = (value, text)

    def input_details(self, raw_input: Any, state_name: str) -> dict[str, Any]:
        """``<Type>StateEntered`` details."""
        return text_details("input", self.json_text(raw_input), name=state_name)

    def output_details(self, output: Any, text: str, state_name: str) -> dict[str, Any]:
        """``<Type>StateExited`` details, from the output's JSON text, with the variables the state
        assigned as JSON text (``assignedVariables``), as Step Functions records them."""
        self.recorded(output, text)
        details = text_details("output", text, name=state_name)
        if self._assigned:
            details["assignedVariables"] = self._assigned
            details["assignedVariablesDetails"] = {"truncated": False}
        return details

    def fork(self, scope: Scope, label: str) -> Lane:
        """A lane for a Parallel branch or a Map iteration (``label`` says which, within the current
        state entry): it reads this lane's variables, and what it assigns stays its own."""
        return Lane(self.run, scope, self.trace.fork(), self.variables.child(), f"{self.place}{label}")

    def follow(self, lanes: list[Lane]) -> None:
        """Continue this lane's event chain after the lanes it forked have finished."""
        self.trace.last_event_id = max(
            [self.trace.last_event_id] + [lane.trace.last_event_id for lane in lanes]
        )

    def check(self) -> None:
        """Raise Cancelled if this lane must stop (cancelled scope, or the execution ran out of time)."""
        left = self.run.seconds_left()
        if left is not None and left <= 0:
            self.run.expire()
        if self.scope.cancelled:
            raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait on the run's clock; a wait past the execution's deadline times the execution out."""
        left = self.run.seconds_left()
        if left is not None and seconds >= left:
            if self.run.clock.sleep(max(left, 0), self.scope.event):
                self.run.expire()
            raise Cancelled()
        if not self.run.clock.sleep(seconds, self.scope.event):
            raise Cancelled()

    def context(self, state_name: str, entered: datetime, retry_count: int = 0) -> Context:
        """The context object ``$$`` for a state entered at ``entered``.

        ``$$.Map`` is not part of it: AWS offers it to a Map state's ItemSelector only, not to the
        states of its iterations.
        """
        state = {"Name": state_name, "EnteredTime": timestamp_text(entered), "RetryCount": retry_count}
        return Context({**self.run.context, "State": state}, self.variables)


IDLE_SECONDS = 30.0
"""How long an idle thread waits for more work before it ends."""


class Threads:
    """Daemon threads that run one function after another: starting a thread costs about 0.1 ms of
    CPU, as much as the rest of a small task's work in the engine. A function waits for no other: an
    idle thread takes it, or a new one. Daemon threads, so that a handler that never returns (its task
    timed out, its execution was aborted) does not keep the process alive."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._lock = threading.Lock()

    def start(self, function: Callable[[], None], name: str) -> None:
        """Run ``function()`` on a thread of its own; ``name`` says what it runs (in tracebacks)."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), daemon=True).start()
        inbox.put(lambda: _named(name, function))

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            try:
                function = inbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # else it was just handed work: take it
                        self._idle.remove(inbox)
                        return
                function = inbox.get()
            function()
            with self._lock:
                self._idle.append(inbox)


def _named(name: str, function: Callable[[], None]) -> None:
    thread = threading.current_thread()
    thread.name, previous = name, thread.name
    try:
        function()
    finally:
        thread.name = previous


THREADS = Threads()


def run_concurrently(count: int, limit: int, body: Callable[[int], Any], scope: Scope) -> list[Any]:
    """``[body(0), ..., body(count - 1)]`` computed on up to ``limit`` threads (the caller's one of them).

    The first failure cancels ``scope`` (so the other bodies stop and no more start) and is raised
    once every thread has finished; Cancelled is raised if the scope was cancelled from outside.
    """
    results: list[Any] = [None] * count
    failures: list[BaseException] = []
    lock = threading.Lock()
    indices = iter(range(count))

    def worker() -> None:
        while not scope.cancelled:
            with lock:
                index = next(indices, None)
            if index is None:
                return
            try:
                results[index] = body(index)
            except Cancelled:
                return
            except BaseException as exc:  # StatesError, or a bug re-raised below
                with lock:
                    failures.append(exc)
                scope.cancel()
                return

    helpers = max(min(limit, count) - 1, 0)
    finished = threading.Semaphore(0)

    def helper() -> None:
        try:
            worker()
        finally:
            finished.release()

    for _ in range(helpers):
        THREADS.start(helper, "lane")
    worker()
    for _ in range(helpers):
        finished.acquire()
    if failures:
        raise failures[0]
    if scope.cancelled:
        raise Cancelled()
    return results
