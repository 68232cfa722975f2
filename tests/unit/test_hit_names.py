"""The remembered products of search hits, and when a request may trust them (no database)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from app.recognition.hit_names import ImageOwners, LogHeadReads, Match, head_reached


def test_an_answer_older_than_a_change_is_not_remembered() -> None:
    owners = ImageOwners()
    epoch = owners.epoch
    owners.remember({1: Match("a", "A")}, epoch)
    assert owners.known([1, 2]) == {1: Match("a", "A")}
    before_query = owners.epoch
    owners.forget([1])  # the shards applied a change to image 1 while a lookup ran
    owners.remember({1: Match("old", "Old"), 2: Match("b", "B")}, before_query)
    assert owners.known([1, 2]) == {}
    owners.remember({2: Match("b", "B")}, owners.epoch)
    owners.forget_all()
    assert owners.known([2]) == {}


def test_memory_is_bounded() -> None:
    owners = ImageOwners(max_entries=3)
    owners.remember({i: Match(str(i), "") for i in range(3)}, owners.epoch)
    owners.remember({7: Match("7", "")}, owners.epoch)
    assert owners.known(range(10)) == {7: Match("7", "")}


def test_a_head_read_is_shared_only_by_requests_that_came_before_it_started() -> None:
    release = threading.Event()
    reads: list[float] = []

    def read() -> int:
        reads.append(time.monotonic())
        release.wait(5)
        return len(reads)

    heads = LogHeadReads(read)
    try:
        first = heads.after(time.monotonic())
        while not reads:
            time.sleep(0.001)
        later = time.monotonic()  # after the first read began: it may miss a write
        second = heads.after(later)
        assert second is not first
        assert heads.after(time.monotonic()) is second  # queued behind the first: it qualifies
        release.set()
        assert first.result(5) == 1 and second.result(5) == 2
        assert reads[1] >= later
    finally:
        heads.close()


def test_a_head_counts_only_once_read_and_reached() -> None:
    pending: Future[int] = Future()
    assert not head_reached(pending, 10) and not head_reached(None, 10)
    failed: Future[int] = Future()
    failed.set_exception(OSError("database unavailable"))
    assert not head_reached(failed, 10)
    done: Future[int] = Future()
    done.set_result(7)
    assert head_reached(done, 7) and not head_reached(done, 6)
