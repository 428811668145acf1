"""The sync engine: list (or read a manifest), decide, download what is missing, build the view.

One source at a time, under a node-wide file lock per container, so two job preps of
the same assets never fetch the same content at once: the second one waits, then
finds everything in the store. Listing and downloading overlap: each page of the
listing is decided and its downloads submitted while the next page is read
(sync/source_run.py); the view being built is written page by page to a scratch table
(sync/newview.py) and swapped in at the end, so memory does not grow with the blobs.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from node_agent.diskfull import disk_full_as, disk_full_error, is_disk_full
from node_agent.errors import StorageError
from node_agent.logs import get_logger
from node_agent.storage.credentials import denied
from node_agent.storage.rest import AccessDenied
from node_agent.sync.changes import RECORD_NAMES, NamedSyncSummary
from node_agent.sync.items import Item, Source
from node_agent.sync.names import NameChecker, fs_case_insensitive
from node_agent.sync.newview import NewView
from node_agent.sync.progress import Progress, SyncSummary
from node_agent.sync.source_run import SourceRun
from node_agent.sync.state import StateDB, db_path
from node_agent.sync.store import ContentStore, ViewWriter, prune_view, view_files
from node_agent.sync.writable import refused_as, require_writable

if TYPE_CHECKING:
    from node_agent.sync.access import Access
    from node_agent.sync.fetch import Fetcher

log = get_logger("sync")


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
        self, view_key: str, view_root: Path, sources: Sequence[Source], *, prune: bool = True
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
        self, view_key: str, view_root: Path, sources: Sequence[Source], prune: bool
    ) -> SyncSummary:
        from node_agent.sync.manifest import pinned_key

        t0 = time.monotonic()
        self.cstore.clean_stale_tmp()
        self._writer = ViewWriter(view_root)
        pin = pinned_key(sources)
        kept = self._view_is(view_key, view_root, pin) if pin is not None else None
        if kept is not None:
            want, extras = kept
            self.summary.listed = self.summary.unchanged = len(want)
            self.local_files = len(extras)
            if extras and prune:
                prune_view(view_root, want)
        else:
            view = NewView(self.db.path)
            try:
                self._sync_sources(sources, view, view_root)
                self.local_files = prune_view(view_root, view.paths(), remove=prune)
                with disk_full_as("the sync state database", self.db.path):
                    replaced, n_replaced, deleted, n_deleted = self.db.replace_view(
                        view_key, view.path, pin, RECORD_NAMES
                    )
                self.summary.set_changes(
                    view.fetched(RECORD_NAMES), replaced, n_replaced, deleted, n_deleted
                )
            finally:
                view.close()
        self.summary.seconds = time.monotonic() - t0
        self.progress.finish()
        return self.summary

    def _sync_sources(self, sources: Sequence[Source], view: NewView, view_root: Path) -> None:
        from node_agent.sync.fetch import Fetcher
        from node_agent.sync.manifest import ManifestSource

        checker = NameChecker(
            windows=self.windows,
            case_insensitive=self.windows or fs_case_insensitive(str(view_root)),
        )
        for n, source in enumerate(sources):
            lock_name = f"{_key(self.access.account_url, source.container)}.lock"
            with FileLock(str(self.cstore.locks / lock_name)):
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
                    SourceRun(self, source, fetcher, checker, view, n).run(items)
                finally:
                    self.summary.changed += fetcher.changes
                    fetcher.close()
        if self.access.replicas is not None:
            self.summary.bodies_by_account = self.access.replicas.record()

    def _view_is(
        self, view_key: str, view_root: Path, pin: str
    ) -> tuple[set[str], list[str]] | None:
        """When the view was built from `pin` and every file is still its intact object,
        reached through real folders only: its files and the view's other files (else None)."""
        if self.db.job_manifest(view_key) != pin:
            return None
        files, other = view_files(view_root)  # never enters a link: a linked path is missing
        want: set[str] = set()
        for path, row in self.db.view_objects(view_key):
            st = self.cstore.intact(row) if row else None
            vst = files.get(path)
            if st is None or vst is None or (vst.st_ino, vst.st_dev) != (st.st_ino, st.st_dev):
                return None
            want.add(path)
        return want, [p for p in files if p not in want] + other

    def _listing(self, source: Source, fetcher: Fetcher) -> Iterator[Item]:
        """A plain tree: the container's blobs under the source's prefix, as view files."""
        prefix = source.prefix
        for b in fetcher.list(prefix):
            if b.name.endswith("/"):
                continue  # a folder marker
            rel = b.name[len(prefix) :]
            path = f"{source.dest.rstrip('/')}/{rel}" if source.dest else rel
            yield Item(path, b.name, b.size, b.etag, b.md5)

    def place(self, obj: str, st: os.stat_result, item: Item) -> None:
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


def _key(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:20]
