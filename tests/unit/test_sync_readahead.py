"""The listing is read ahead of the decisions (sync/readahead.py): same items in the same
order, at most `depth` batches ahead, the producer's error raised to the consumer, and a
consumer that stops early stops the producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from node_agent.errors import StorageError
from node_agent.sync.readahead import read_ahead


def test_same_items_in_order_in_batches() -> None:
    got = list(read_ahead(iter(range(1234)), 500, 3))
    assert [len(b) for b in got] == [500, 500, 234]
    assert [i for b in got for i in b] == list(range(1234))
    assert list(read_ahead(iter([]), 500, 3)) == []


def test_the_producer_stays_at_most_depth_batches_ahead() -> None:
    produced = 0

    def items() -> Iterator[int]:
        nonlocal produced
        for i in range(100_000):
            produced = i + 1
            yield i

    it = read_ahead(items(), 10, 4)
    first = next(it)
    time.sleep(0.3)  # let the producer run as far as it can
    assert first == list(range(10))
    # taken (1) + queued (4) + one being put (1) batches, plus the item that started the next
    assert produced <= 10 * 6 + 1, produced
    it.close()


def test_a_listing_error_reaches_the_consumer() -> None:
    def items() -> Iterator[int]:
        yield from range(25)
        raise StorageError("listing 'c': HTTP 403 AuthorizationFailure")

    it = read_ahead(items(), 10, 2)
    assert next(it) == list(range(10)) and next(it) == list(range(10, 20))
    with pytest.raises(StorageError, match="AuthorizationFailure"):
        next(it)


def test_a_consumer_that_stops_stops_the_producer() -> None:
    def items() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    it = read_ahead(items(), 10, 2)
    next(it)
    it.close()  # the sync failed on this page
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
