"""The watcher's backlog: what its threads handed over and the event loop has not handled yet."""

from __future__ import annotations

import threading

from bot.adapters.kube.watcher import _Backlog


def _waiting(backlog: _Backlog, count: int) -> tuple[threading.Thread, list[bool]]:
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(backlog.reserve(count)))
    thread.start()
    return thread, answers


def test_a_page_larger_than_the_limit_passes_when_nothing_waits() -> None:
    backlog = _Backlog(100, threading.Event())
    assert backlog.reserve(500)
    backlog.release(500)
    assert backlog.reserve(30)
    assert backlog.reserve(70)  # exactly full


def test_a_thread_waits_for_room_until_the_loop_handles_what_waits() -> None:
    backlog = _Backlog(600, threading.Event())
    assert backlog.reserve(500)
    thread, answers = _waiting(backlog, 500)
    backlog.release(500)
    thread.join(timeout=30)
    assert answers == [True]


def test_stopping_frees_a_waiting_thread() -> None:
    stop = threading.Event()
    backlog = _Backlog(600, stop)
    assert backlog.reserve(500)
    thread, answers = _waiting(backlog, 500)
    stop.set()
    backlog.wake()
    thread.join(timeout=30)
    assert answers == [False]
    assert not backlog.reserve(1)  # nothing more is handed over once stopping
