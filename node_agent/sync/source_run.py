"""One source of a sync: each page of the listing (or manifest) is decided against the state
DB, its missing content submitted to the fetch threads while the next page is read, and
finished downloads recorded in batches.

Memory is a page plus the downloads in flight, whatever the number of blobs: the blob and
object rows of a page are read for that page (`... IN (...)`), only the objects recorded
since the last commit are kept here (the DB has the others), and the view being built goes
page by page into the scratch NewView (sync/newview.py).
"""

from __future__ import annotations

import os
import queue
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from node_agent.diskfull import disk_full_as
from node_agent.errors import DiskFullError, StorageError
from node_agent.logs import get_logger
from node_agent.safepath import shown
from node_agent.sync.items import Item, Source
from node_agent.sync.readahead import read_ahead
from node_agent.sync.state import BlobRow, ObjectRow

if TYPE_CHECKING:
    from node_agent.sync.engine import SyncEngine
    from node_agent.sync.fetch import Fetcher
    from node_agent.sync.names import NameChecker
    from node_agent.sync.newview import NewView

log = get_logger("sync")
BATCH = 500  # items decided per page; rows recorded per state DB transaction
AHEAD = 20  # batches listed ahead of the decisions: two listing pages of 5,000
Done = Future[tuple[Item, str, int, bytes]]


class SourceRun:
    """Syncs one source into the view being built; `run` once."""

    def __init__(
        self,
        engine: SyncEngine,
        source: Source,
        fetcher: Fetcher,
        checker: NameChecker,
        view: NewView,
        n: int,
    ) -> None:
        self.e = engine
        self.db = engine.db
        self.summary = engine.summary
        self.source = source
        self.fetcher = fetcher
        self.checker = checker
        self.view = view
        self.n = n  # the source's number in the view (which blobs it listed)
        self.src = f"{engine.access.account_url}/{source.container}"
        # recorded since the last commit (the state DB has the others)
        self.fresh: dict[str, ObjectRow] = {}
        self.fresh_md5: dict[tuple[bytes, int], str] = {}
        self.new_objects: list[tuple[str, int, int, bytes | None]] = []
        self.new_blobs: list[tuple[str, str, int, str, bytes | None, str]] = []
        self.inflight_bytes = 0
        self.listed_sizes: dict[str, int] = {}  # in flight, by blob name
        # content being fetched -> other items with the same content, placed when it lands
        self.followers: dict[str, list[Item]] = {}
        self.pending: set[Done] = set()
        self.done_q: queue.SimpleQueue[Done] = queue.SimpleQueue()

    def run(self, items: Iterable[Item]) -> None:
        threads = self.e.threads
        pool = ThreadPoolExecutor(threads, thread_name_prefix="fetch")
        try:
            for batch in read_ahead(items, BATCH, AHEAD):
                todo = self._decide(batch)
                self._check_disk(todo)
                for item in todo:
                    self.inflight_bytes += item.size
                    self.listed_sizes[item.name] = item.size
                    f = pool.submit(self._fetch_one, item)
                    self.pending.add(f)
                    f.add_done_callback(self.done_q.put)
                self._drain(block=False)
                while len(self.pending) > threads * 64:  # bounded memory on huge listings
                    self._drain(block=True)
                self._flush_view()
                self.e.progress.tick()
            while self.pending:
                self._drain(block=True)
                self.e.progress.tick()
        except BaseException:
            for f in self.pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            try:  # keep what was completely written; the first error is the one to report
                self._commit()
            except Exception as e:
                log.warning("could not record the downloads finished so far: %s", e)
            raise
        pool.shutdown(wait=True)
        self._commit()
        self._flush_view()
        if not self.source.manifest:  # blobs no longer listed: their rows go
            with disk_full_as("the sync state database", self.db.path):
                self.db.forget_unseen(self.src, self.source.prefix, self.view.path, self.n)

    # --- deciding a page --------------------------------------------------------
    def _decide(self, batch: list[Item]) -> list[Item]:
        """Place what the store holds intact; returns the items to fetch (one per content)."""
        accepted: list[Item] = []
        for item in batch:
            self.summary.listed += 1
            problem = self.checker.check(item.path)
            if problem:
                self.summary.refused += 1
                self.summary.refused_names.append(f"{shown(item.name)}: {problem}")
                log.warning("refused blob name %r: %s", item.name, problem)
                continue
            accepted.append(item)
        known, wanted = self._candidates(accepted)
        rows = self.db.objects_for([h for h in set(wanted) if h and h not in self.fresh])
        todo: list[Item] = []
        for item, h in zip(accepted, wanted, strict=True):
            found = self._resolve(item, h, known, rows)
            if found is None:
                same = _content_key(item)
                if same is not None and same in self.followers:
                    self.followers[same].append(item)
                else:
                    if same is not None:
                        self.followers[same] = []
                    todo.append(item)
                continue
            self.e.place(self.e.cstore.obj(found[0]), found[1], item)
            self.view.add(item.path, found[0], item.name, self.n, fetched=False)
            self.summary.unchanged += 1
        return todo

    def _candidates(self, items: list[Item]) -> tuple[dict[str, BlobRow], list[str | None]]:
        """The page's blob rows, and for each item the content it should hold when known:
        its manifest hash, its recorded blob's (same size and ETag, or Content-MD5), else
        content in the store with its Content-MD5 and size."""
        names = [i.name for i in items if i.hash is None]
        known = self.db.blobs_for(self.src, names) if names else {}
        wanted: list[str | None] = []
        by_md5: list[tuple[int, tuple[bytes, int]]] = []  # (index, key) to look up
        for item in items:
            h = item.hash
            if h is None:
                prev = known.get(item.name)
                if prev is not None and prev.size == item.size and _same(prev, item):
                    h = prev.hash
                elif item.md5:
                    h = self.fresh_md5.get((item.md5, item.size))
                    if h is None:
                        by_md5.append((len(wanted), (item.md5, item.size)))
            wanted.append(h)
        if by_md5:
            stored = self.db.hashes_by_md5([key for _, key in by_md5])
            for i, key in by_md5:
                wanted[i] = stored.get(key)
        return known, wanted

    def _resolve(
        self, item: Item, h: str | None, known: dict[str, BlobRow], rows: dict[str, ObjectRow]
    ) -> tuple[str, os.stat_result] | None:
        """The content hash of `item` and its object's stat when the store holds it intact."""
        row = (self.fresh.get(h) or rows.get(h)) if h is not None else None
        if h is None or row is None:
            return None
        st = self.e.cstore.intact(row)
        if st is None:
            log.warning(
                "cached content %s was changed or removed on this node: fetching it again", h[:12]
            )
            self.e.cstore.drop(h)
            self.fresh.pop(h, None)
            rows.pop(h, None)
            with disk_full_as("the sync state database", self.db.path):
                self.db.forget_objects([h])
            return None
        prev = known.get(item.name)
        if item.hash is None and (prev is None or prev.etag != item.etag or prev.hash != h):
            self.new_blobs.append((self.src, item.name, item.size, item.etag, item.md5, h))
        return h, st

    # --- downloads --------------------------------------------------------------
    def _fetch_one(self, item: Item) -> tuple[Item, str, int, bytes]:
        tmp = self.e.cstore.tmp_path()
        fetcher = self.fetcher
        try:
            got = fetcher.fetch(
                item.name, item.size, item.md5, tmp, etag=item.etag or None, sha256=item.hash
            )
            if got.changed:  # fetched again at its new version: record that one
                item = item.at_version(got.size, got.etag, got.content_md5)
            if item.hash and got.sha256 != item.hash:
                raise StorageError(
                    f"blob '{item.name}': content does not match its hash {item.hash[:12]}"
                )
            with disk_full_as(f"blob '{fetcher.container}/{item.name}'", tmp):
                obj, mtime_ns = self.e.cstore.adopt(tmp, got.sha256)
            self.e.place(str(obj), os.stat(obj), item)
            return item, got.sha256, mtime_ns, got.md5
        finally:
            tmp.unlink(missing_ok=True)

    def _drain(self, *, block: bool) -> None:
        """Record finished downloads; with `block`, wait for at least one."""
        done = []
        if block and self.pending:
            done.append(self.done_q.get())
        while True:
            try:
                done.append(self.done_q.get_nowait())
            except queue.Empty:
                break
        self.pending.difference_update(done)
        for f in done:
            item, h, mtime_ns, md5 = f.result()
            # the size listed is what was counted in flight (a changed blob may differ)
            self.inflight_bytes -= self.listed_sizes.pop(item.name, item.size)
            md5_or_none = md5 or None  # big blobs without a Content-MD5 are not md5-hashed
            self.new_objects.append((h, item.size, mtime_ns, md5_or_none))
            self.fresh[h] = ObjectRow(h, item.size, mtime_ns, md5_or_none, time.time())
            if md5:
                self.fresh_md5[(md5, item.size)] = h
            if item.hash is None:
                self.new_blobs.append((self.src, item.name, item.size, item.etag, item.md5, h))
            self.view.add(item.path, h, item.name, self.n, fetched=True)
            self.summary.downloaded += 1
            self.summary.bytes_downloaded += item.size
            same = _content_key(item)
            for other in self.followers.pop(same, []) if same else []:
                obj = self.e.cstore.obj(h)
                self.e.place(obj, os.stat(obj), other)
                self.view.add(other.path, h, other.name, self.n, fetched=False)
                if other.hash is None:
                    self.new_blobs.append(
                        (self.src, other.name, other.size, other.etag, other.md5, h)
                    )
                self.summary.unchanged += 1
        if len(self.new_objects) + len(self.new_blobs) >= BATCH:
            self._commit()

    def _commit(self) -> None:
        if self.new_objects or self.new_blobs:
            with disk_full_as("the sync state database", self.db.path):
                self.db.record(self.new_objects, self.new_blobs)
            self.new_objects.clear()
            self.new_blobs.clear()
            self.fresh.clear()  # now in the DB: later pages read them from there
            self.fresh_md5.clear()

    def _flush_view(self) -> None:
        with disk_full_as("the sync's scratch view", self.view.path):
            self.view.flush()

    def _check_disk(self, todo: list[Item]) -> None:
        if not todo:
            return
        need = sum(i.size for i in todo) + self.inflight_bytes
        root = self.e.cstore.root
        free = shutil.disk_usage(root).free
        if need > free - self.e.reserve:
            raise DiskFullError(
                f"asset sync needs {need / 1e6:.1f} MB but {root} has "
                f"{free / 1e6:.1f} MB free minus a reserve of {self.e.reserve / 1e6:.1f} MB "
                "(policies.free_space_reserve_mb)"
            )


def _same(prev: BlobRow, item: Item) -> bool:
    return prev.etag == item.etag or bool(item.md5 and prev.md5 == item.md5)


def _content_key(item: Item) -> str | None:
    if item.hash:
        return item.hash
    return f"{item.md5.hex()}:{item.size}" if item.md5 else None
