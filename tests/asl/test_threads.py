"""The engine's reusable threads: every function runs at once, none waits for another, and threads
that sat idle end without losing work handed to them."""

from __future__ import annotations

import threading

import pytest

from cvpipe.asl import execution
from cvpipe.asl.execution import Threads

pytestmark = pytest.mark.unit


def eventually(condition) -> bool:
    """Whether ``condition()`` holds within ten seconds."""
    for _ in range(10_000):
        if condition():
            return True
        threading.Event().wait(0.001)
    return False


def test_functions_run_at_once_even_when_each_waits_for_the_other():
    threads = Threads()
    first, second = threading.Event(), threading.Event()
    done = threading.Barrier(3, timeout=10)
    threads.start(lambda: (first.set(), second.wait(10), done.wait()), "first")
    threads.start(lambda: (second.set(), first.wait(10), done.wait()), "second")
    done.wait()
    assert first.is_set() and second.is_set()


def test_a_thread_is_reused_once_its_function_has_returned():
    threads = Threads()
    seen: list[int] = []
    for _ in range(20):
        ran = threading.Event()
        threads.start(lambda ran=ran: (seen.append(threading.get_ident()), ran.set()), "work")
        assert ran.wait(10)
        assert eventually(lambda: threads._idle)  # the thread is back just after the function returns
    assert len(set(seen)) == 1


def test_an_idle_thread_ends_and_new_work_still_runs(monkeypatch):
    monkeypatch.setattr(execution, "IDLE_SECONDS", 0.01)
    threads = Threads()
    first = threading.Event()
    threads.start(first.set, "first")
    assert first.wait(10)
    assert eventually(lambda: not threads._idle)
    second = threading.Event()
    threads.start(second.set, "second")
    assert second.wait(10)


def test_a_function_runs_under_the_name_it_was_given():
    threads = Threads()
    names: list[str] = []
    ran = threading.Event()
    threads.start(lambda: (names.append(threading.current_thread().name), ran.set()), "task:Fit")
    assert ran.wait(10)
    assert names == ["task:Fit"]
