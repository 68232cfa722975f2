"""Naming search hits: image id -> (sku, name), as SQL says, and when SQL need not be asked.

Every search hit is named from SQL, which is also what makes a deletion through another replica
vanish at once (docs/DEPLOYMENT.md, "Consistency between replicas"). That lookup costs a query
per request; two pieces let most requests skip it without losing the guarantee, and `HitNames`
puts them together:

- `ImageOwners` remembers the (sku, name) SQL gave for each image id. It forgets an image's
  entry whenever the shards apply a change to it (`ShardStore.on_change`), and a lookup that
  raced with such a change is not remembered (the epoch), so an entry is never older than the
  shards' own state.
- `LogHeadReads` reads the change log's head in the background when a request starts. If the
  shards have applied that much by the time the request's hits are named, every write
  acknowledged before the request (every deletion above all) is in the shards and in
  `ImageOwners`, so remembered entries are as good as SQL's answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from app.catalogue.products import ProductStore
from app.index.shard_store import ShardStore

# Bound on remembered images (~100 bytes each): past it the memory is dropped and refilled.
MAX_OWNERS = 2_000_000


@dataclass(frozen=True)
class Match:
    sku: str
    name: str


class NotRemembered(LookupError):
    """Memory cannot answer for these hits: SQL must (`HitNames.matches_for`)."""


class ImageOwners:
    def __init__(self, max_entries: int = MAX_OWNERS) -> None:
        self._owners: dict[int, Match] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.epoch = 0  # bumped by every forget: a lookup older than it is not remembered

    def known(self, image_ids: Iterable[int]) -> dict[int, Match]:
        owners = self._owners
        return {i: m for i in image_ids if (m := owners.get(i)) is not None}

    def remember(self, owners: dict[int, Match], epoch: int) -> None:
        """Keep what SQL said, unless the shards changed since `epoch` was read (before the
        query): the answer may predate that change."""
        with self._lock:
            if epoch != self.epoch:
                return
            if len(self._owners) + len(owners) > self.max_entries:
                self._owners.clear()
            self._owners.update(owners)

    def forget(self, image_ids: Iterable[int]) -> None:
        with self._lock:
            self.epoch += 1
            for image_id in image_ids:
                self._owners.pop(image_id, None)

    def forget_all(self) -> None:
        with self._lock:
            self.epoch += 1
            self._owners.clear()

    def changed(self, image_ids: list[int] | None) -> None:
        """A `ShardStore` change listener: None means every shard was replaced."""
        if image_ids is None:
            self.forget_all()
        else:
            self.forget(image_ids)


@dataclass
class _Read:
    future: Future[int] = field(init=False)  # set once submitted
    started: float | None = None  # monotonic; None while queued


class LogHeadReads:
    """Reads of the change log's last sequence number on a thread of their own, shared by the
    requests that arrive while one waits to start: at most one runs and one waits."""

    def __init__(self, read: Callable[[], int], close: Callable[[], None] = lambda: None) -> None:
        self._read = read
        self._close = close
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-head")
        self._lock = threading.Lock()
        self._latest: _Read | None = None

    def after(self, moment: float) -> Future[int]:
        """A read that starts no earlier than `moment` (`time.monotonic()`)."""
        with self._lock:
            latest = self._latest
            if latest is not None and (latest.started is None or latest.started >= moment):
                return latest.future  # still queued, or began after `moment`: it qualifies
            read = _Read()

            def timed_read() -> int:
                read.started = time.monotonic()
                return self._read()

            read.future = self._pool.submit(timed_read)
            self._latest = read
            return read.future

    def close(self) -> None:
        """Stop; `close` runs on the reading thread, after a read in progress (never waited
        for: during a database outage one may hang until its connect timeout)."""
        with self._lock:
            if self._latest is not None:
                self._latest.future.cancel()  # if not started yet
            self._pool.submit(self._close)
            self._pool.shutdown(wait=False)


def head_reached(head: Future[int] | None, position: int) -> bool:
    """True when `head` has been read and the shards' `position` is at or past it. A read still
    running or failed counts as not reached: the caller asks SQL, as it would anyway."""
    if head is None or not head.done() or head.cancelled() or head.exception() is not None:
        return False
    return head.result() <= position


class HitNames:
    """Names search hits for one store's model; the one place a hit becomes a product."""

    def __init__(
        self,
        store: ShardStore,
        products: ProductStore,
        read_head: Callable[[], int],
        close_head: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.products = products
        self.owners = ImageOwners()
        store.on_change(self.owners.changed)
        self.head_reads = LogHeadReads(read_head, close_head)

    def head_after(self, moment: float) -> Future[int]:
        """The log head as read no earlier than `moment`: pass it to `matches_for`."""
        return self.head_reads.after(moment)

    def remembered(
        self, image_ids: Iterable[int], head: Future[int] | None = None
    ) -> dict[int, Match]:
        """What `matches_for` would answer, from memory alone (no I/O: fit for the event loop);
        raises NotRemembered when only SQL can say (the head not reached, an id not known)."""
        wanted = sorted({int(i) for i in image_ids if i >= 0})
        if not wanted:
            return {}
        if not head_reached(head, self.store.position):
            raise NotRemembered(len(wanted))
        known = self.owners.known(wanted)
        if len(known) < len(wanted):
            raise NotRemembered(len(wanted) - len(known))
        return known

    def matches_for(
        self, image_ids: Iterable[int], head: Future[int] | None = None
    ) -> dict[int, Match]:
        """Image id -> product; ids deleted since the shards loaded drop out.

        SQL answers, unless `head` (read when the request started) shows the shards had
        applied every write acknowledged before the request: then the products SQL gave
        earlier answer for the ids they know. Takes image ids, not vector ids."""
        wanted = sorted({int(i) for i in image_ids if i >= 0})
        if not wanted:
            return {}
        owners = self.owners
        known = owners.known(wanted) if head_reached(head, self.store.position) else {}
        missing = [i for i in wanted if i not in known]
        if missing:
            epoch = owners.epoch  # before the query: a change applied meanwhile voids it
            found = {
                image_id: Match(sku, name)
                for image_id, (sku, name) in self.products.owners_of(missing).items()
            }
            owners.remember(found, epoch)
            known.update(found)
        return known

    def close(self) -> None:
        self.head_reads.close()
