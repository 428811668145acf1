"""The sync engine: list (or read a manifest), decide, download what is missing, build the view.

One source at a time, under a node-wide file lock per container, so two job preps of
the same assets never fetch the same content at once: the second one waits, then
finds everything in the store. Listing and downloading overlap: each page of the
listing is decided and its downloads submitted while the next page is read.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from node_agent.diskfull import disk_full_as, disk_full_error, is_disk_full
from node_agent.errors import DiskFullError, StorageError
from node_agent.logs import get_logger
from node_agent.safepath import shown
from node_agent.storage.credentials import denied
from node_agent.storage.rest import AccessDenied
from node_agent.sync.changes import NamedSyncSummary
from node_agent.sync.items import Item
from node_agent.sync.names import NameChecker, fs_case_insensitive
from node_agent.sync.progress import Progress, SyncSummary
from node_agent.sync.state import BlobRow, ObjectRow, StateDB, db_path
from node_agent.sync.store import ContentStore, ViewWriter, prune_view, view_files
from node_agent.sync.writable import refused_as, require_writable

if TYPE_CHECKING:  # types only: importing node_agent.spec builds its pydantic models
    from node_agent.spec import AssetSource
    from node_agent.sync.access import Access
    from node_agent.sync.fetch import Fetcher

log = get_logger("sync")
BATCH = 500


@dataclass
class _Run:
    """Per-source bookkeeping while a source syncs."""

    src: str
    objects: dict[str, ObjectRow]
    new_objects: list[tuple[str, int, int, bytes | None]] = field(default_factory=list)
    new_blobs: list[tuple[str, str, int, str, bytes | None, str]] = field(default_factory=list)
    inflight_bytes: int = 0
    listed_sizes: dict[str, int] = field(default_factory=dict)  # in flight, by blob name
    # content being fetched -> other items with the same content, placed when it lands
    followers: dict[str, list[Item]] = field(default_factory=dict)
    by_md5: dict[tuple[bytes, int], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_md5 = {(o.md5, o.size): h for h, o in self.objects.items() if o.md5}


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class SyncEngine:
    def __init__(
        self,
        cache_dir: Path,
        state_dir: Path,
        access: Access,
        *,
        reserve_bytes: int = 0,
        windows: bool = False,
        threads: int = 16,
        progress: Progress | None = None,
        retry_s: float = 60.0,
    ) -> None:
        self.retry_s = retry_s
        with (
            disk_full_as("the node's content store", cache_dir),
            refused_as("the cache", cache_dir),
        ):
            self.cstore = ContentStore(cache_dir)
            require_writable("the cache", [self.cstore.objects, self.cstore.tmp, self.cstore.locks])
        with (
            disk_full_as("the sync state database", db_path(state_dir)),
            refused_as("the sync state database", db_path(state_dir)),
        ):
            require_writable("the node's state", [state_dir])
            self.db = StateDB(db_path(state_dir), self.cstore.objects)
        self.access = access
        self.reserve = reserve_bytes
        self.windows = windows
        self.threads = threads
        self.summary = NamedSyncSummary()
        self.progress = progress or Progress(self.summary)
        self.progress.summary = self.summary
        # files (and links) in the view that no source holds: removed, or kept (prune=False)
        self.local_files = 0
        self._writer: ViewWriter | None = None

    def close(self) -> None:
        self.db.close()

    # --- entry point ---------------------------------------------------------
    def sync(
        self, view_key: str, view_root: Path, sources: list[AssetSource], *, prune: bool = True
    ) -> SyncSummary:
        """Make `view_root` hold the sources' files; returns the summary.

        With `prune` (job views: node_agent's own) every other file is removed, else it is
        kept; either way `local_files` counts them. Nothing is ever written or removed
        through a symbolic link in the view: one met on a source's path is replaced.

        A write that finds the disk full (ENOSPC, EDQUOT, SQLite's "disk is full") raises
        DiskFullError naming the file and the free bytes; temp files are removed and the
        state DB only ever records objects that were completely written, so a re-run with
        space finishes the job."""
        # a backstop: the writes of a sync name their blob or file themselves
        with disk_full_as("the asset sync", view_root), refused_as("the asset sync", view_root):
            try:
                return self._sync(view_key, view_root, sources, prune)
            except AccessDenied as e:  # name the credential that was refused
                raise StorageError(denied(e.what, e.status, e.code, self.access.storage)) from None

    def _sync(
        self, view_key: str, view_root: Path, sources: list[AssetSource], prune: bool
    ) -> SyncSummary:
        from node_agent.sync.manifest import ManifestSource, pinned_key

        t0 = time.monotonic()
        self.cstore.clean_stale_tmp()
        self._writer = ViewWriter(view_root)
        pin = pinned_key(sources)
        extras = self._view_is(view_key, view_root, pin) if pin is not None else None
        if extras is not None:
            self.summary.listed = self.summary.unchanged = len(self.db.view(view_key))
            self.local_files = len(extras)
            if extras and prune:
                prune_view(view_root, set(self.db.view(view_key)))
        else:
            checker = NameChecker(
                windows=self.windows,
                case_insensitive=self.windows or fs_case_insensitive(str(view_root)),
            )
            view: dict[str, str] = {}
            before = self.db.view(view_key)
            for source in sources:
                lock_name = f"{_key(self.access.account_url, source.container)}.lock"
                with FileLock(str(self.cstore.locks / lock_name)):
                    from node_agent.sync.fetch import Fetcher

                    fetcher = Fetcher(
                        self.access,
                        source.container,
                        connections=self.threads * 2,
                        retry_s=self.retry_s,
                    )
                    try:
                        items: Iterable[Item] = (
                            ManifestSource(fetcher, self.cstore, source).items()
                            if source.manifest
                            else self._listing(source, fetcher)
                        )
                        self._sync_items(source, items, checker, view, fetcher)
                    finally:
                        self.summary.changed += fetcher.changes
                        fetcher.close()
            self.local_files = prune_view(view_root, set(view), remove=prune)
            with disk_full_as("the sync state database", self.db.path):
                self.db.set_view(view_key, view, pin)
            self.summary.compare_views(before, view)
        self.summary.seconds = time.monotonic() - t0
        self.progress.finish()
        return self.summary

    def _view_is(self, view_key: str, view_root: Path, pin: str) -> list[str] | None:
        """When the view was built from `pin` and every file is still its intact object,
        reached through real folders only: the view's other files (else None)."""
        if self.db.job_manifest(view_key) != pin:
            return None
        objects = self.db.all_objects()
        files, other = view_files(view_root)  # never enters a link: a linked path is missing
        want = self.db.view(view_key)
        for path, h in want.items():
            row = objects.get(h)
            st = self.cstore.intact(row) if row else None
            vst = files.get(path)
            if st is None or vst is None or (vst.st_ino, vst.st_dev) != (st.st_ino, st.st_dev):
                return None
        return [p for p in files if p not in want] + other

    # --- plain trees -----------------------------------------------------------
    def _listing(self, source: AssetSource, fetcher: Fetcher) -> Iterator[Item]:
        prefix = source.prefix
        for b in fetcher.list(prefix):
            if b.name.endswith("/"):
                continue  # a folder marker
            rel = b.name[len(prefix) :]
            path = f"{source.dest.rstrip('/')}/{rel}" if source.dest else rel
            yield Item(path, b.name, b.size, b.etag, b.md5)

    # --- the shared part -------------------------------------------------------
    def _sync_items(
        self,
        source: AssetSource,
        items: Iterable[Item],
        checker: NameChecker,
        view: dict[str, str],
        fetcher: Fetcher,
    ) -> None:
        src = f"{self.access.account_url}/{source.container}"
        run = _Run(src, self.db.all_objects())
        known: dict[str, BlobRow] = {} if source.manifest else self.db.all_blobs(src, source.prefix)
        seen: set[str] = set()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fetch")
        pending: set[Future[tuple[Item, str, int, bytes]]] = set()
        done_q: queue.SimpleQueue[Future[tuple[Item, str, int, bytes]]] = queue.SimpleQueue()
        try:
            for batch in _batches(items, BATCH):
                todo: list[Item] = []
                for item in batch:
                    self.summary.listed += 1
                    seen.add(item.name)
                    problem = checker.check(item.path)
                    if problem:
                        self.summary.refused += 1
                        self.summary.refused_names.append(f"{shown(item.name)}: {problem}")
                        log.warning("refused blob name %r: %s", item.name, problem)
                        continue
                    found = self._resolve(item, known, run)
                    if found is None:
                        same = _content_key(item)
                        if same is not None and same in run.followers:
                            run.followers[same].append(item)
                        else:
                            if same is not None:
                                run.followers[same] = []
                            todo.append(item)
                        continue
                    h, st = found
                    self._place(self.cstore.obj(h), st, item)
                    view[item.path] = h
                    self.summary.unchanged += 1
                self._check_disk(todo, run)
                for item in todo:
                    run.inflight_bytes += item.size
                    run.listed_sizes[item.name] = item.size
                    f = pool.submit(self._fetch_one, fetcher, item)
                    pending.add(f)
                    f.add_done_callback(done_q.put)
                self._drain(pending, done_q, run, view, block=False)
                while len(pending) > self.threads * 64:  # bounded memory on huge listings
                    self._drain(pending, done_q, run, view, block=True)
                self.progress.tick()
            while pending:
                self._drain(pending, done_q, run, view, block=True)
                self.progress.tick()
        except BaseException:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            try:  # keep what was completely written; the first error is the one to report
                self._commit(run)
            except Exception as e:
                log.warning("could not record the downloads finished so far: %s", e)
            raise
        pool.shutdown(wait=True)
        self._commit(run)
        gone = [n for n in known if n not in seen]
        if gone:
            with disk_full_as("the sync state database", self.db.path):
                self.db.forget_blobs(src, gone)

    def _resolve(
        self, item: Item, known: dict[str, BlobRow], run: _Run
    ) -> tuple[str, os.stat_result] | None:
        """The content hash of `item` when the store already holds it intact, else None."""
        h = item.hash
        if h is None:
            prev = known.get(item.name)
            if (
                prev is not None
                and prev.size == item.size
                and (prev.etag == item.etag or (item.md5 and prev.md5 == item.md5))
            ):
                h = prev.hash
            elif item.md5:
                h = run.by_md5.get((item.md5, item.size))
        if h is None or h not in run.objects:
            return None
        st = self.cstore.intact(run.objects[h])
        if st is None:
            log.warning(
                "cached content %s was changed or removed on this node: fetching it again", h[:12]
            )
            self.cstore.drop(h)
            del run.objects[h]
            with disk_full_as("the sync state database", self.db.path):
                self.db.forget_objects([h])
            return None
        prev = known.get(item.name)
        if item.hash is None and (prev is None or prev.etag != item.etag or prev.hash != h):
            run.new_blobs.append((run.src, item.name, item.size, item.etag, item.md5, h))
        return h, st

    def _fetch_one(self, fetcher: Fetcher, item: Item) -> tuple[Item, str, int, bytes]:
        tmp = self.cstore.tmp_path()
        try:
            got = fetcher.fetch(item.name, item.size, item.md5, tmp, etag=item.etag or None)
            if got.changed:  # fetched again at its new version: record that one
                item = item.at_version(got.size, got.etag, got.content_md5)
            if item.hash and got.sha256 != item.hash:
                raise StorageError(
                    f"blob '{item.name}': content does not match its hash {item.hash[:12]}"
                )
            with disk_full_as(f"blob '{fetcher.container}/{item.name}'", tmp):
                obj, mtime_ns = self.cstore.adopt(tmp, got.sha256)
            self._place(str(obj), os.stat(obj), item)
            return item, got.sha256, mtime_ns, got.md5
        finally:
            tmp.unlink(missing_ok=True)

    def _place(self, obj: str, st: os.stat_result, item: Item) -> None:
        """ViewWriter.place, with a full disk (a copy where links are impossible, a new
        folder, a link's directory entry) reported as DiskFullError naming the view file."""
        assert self._writer is not None
        try:
            self._writer.place(obj, st, item.path)
        except OSError as e:
            if not is_disk_full(e):
                raise
            target = os.path.join(self._writer.root, item.path)
            raise disk_full_error(f"view file '{item.path}'", target, e) from None

    def _drain(
        self,
        pending: set[Future[tuple[Item, str, int, bytes]]],
        done_q: queue.SimpleQueue[Future[tuple[Item, str, int, bytes]]],
        run: _Run,
        view: dict[str, str],
        *,
        block: bool,
    ) -> None:
        """Record finished downloads; with `block`, wait for at least one."""
        done = []
        if block and pending:
            done.append(done_q.get())
        while True:
            try:
                done.append(done_q.get_nowait())
            except queue.Empty:
                break
        pending.difference_update(done)
        for f in done:
            item, h, mtime_ns, md5 = f.result()
            # the size listed is what was counted in flight (a changed blob may differ)
            run.inflight_bytes -= run.listed_sizes.pop(item.name, item.size)
            md5_or_none = md5 or None  # big blobs without a Content-MD5 are not md5-hashed
            run.new_objects.append((h, item.size, mtime_ns, md5_or_none))
            run.objects[h] = ObjectRow(h, item.size, mtime_ns, md5_or_none, time.time())
            if md5:
                run.by_md5[(md5, item.size)] = h
            if item.hash is None:
                run.new_blobs.append((run.src, item.name, item.size, item.etag, item.md5, h))
            view[item.path] = h
            self.summary.downloaded += 1
            self.summary.downloaded_files.append(item.path)
            self.summary.bytes_downloaded += item.size
            same = _content_key(item)
            for other in run.followers.pop(same, []) if same else []:
                obj = self.cstore.obj(h)
                self._place(obj, os.stat(obj), other)
                view[other.path] = h
                if other.hash is None:
                    run.new_blobs.append(
                        (run.src, other.name, other.size, other.etag, other.md5, h)
                    )
                self.summary.unchanged += 1
        if len(run.new_objects) + len(run.new_blobs) >= BATCH:
            self._commit(run)

    def _commit(self, run: _Run) -> None:
        if run.new_objects or run.new_blobs:
            with disk_full_as("the sync state database", self.db.path):
                self.db.record(run.new_objects, run.new_blobs)
            run.new_objects.clear()
            run.new_blobs.clear()

    def _check_disk(self, todo: list[Item], run: _Run) -> None:
        need = sum(i.size for i in todo) + run.inflight_bytes
        if not todo:
            return
        free = free_bytes(self.cstore.root)
        if need > free - self.reserve:
            raise DiskFullError(
                f"asset sync needs {need / 1e6:.1f} MB but {self.cstore.root} has "
                f"{free / 1e6:.1f} MB free minus a reserve of {self.reserve / 1e6:.1f} MB "
                "(policies.free_space_reserve_mb)"
            )


def _batches(items: Iterable[Item], n: int) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _content_key(item: Item) -> str | None:
    if item.hash:
        return item.hash
    return f"{item.md5.hex()}:{item.size}" if item.md5 else None


def _key(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:20]
