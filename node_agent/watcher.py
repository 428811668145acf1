"""Progressive upload: each frame goes to blob storage as soon as the renderer closed it.

A watchdog observer watches the output folder. On Linux a file is a candidate when it is
closed after writing (inotify IN_CLOSE_WRITE) or renamed into place; elsewhere when it is
created or modified. Either way it is uploaded only once its size and mtime stay the same
over `settle_s`. `finish()` stops the observer and sweeps the folder for anything missed or
changed since its upload. Failed uploads are retried there; what still fails is reported.

What is uploaded and what is refused is outputs.examine's rule (checked blob names;
links inside the folder uploaded as their target's bytes, links out refused), the same
for early uploads and the final sweep. `done()` is exactly the blobs this task put in
storage, also after a failure: the summary and the missing-frames check read it.

The blob store may be given as a factory: the worker thread makes it, so the renderer
starts while the storage SDK loads; a store that cannot be set up is reported through
`on_fatal` and raised by `finish()`. With `start(defer_store=True)` the watching and the
store both begin at `begin()`, once the renderer started: the SDK's ~0.1 s import (in the
worker, holding the GIL) and watchdog's do not delay the renderer's start. Files already
in the folder when the watching begins are queued then, so none waits for the final sweep.

Each upload logs one INFO line (file, size, seconds); every `summary_every` uploads, and at
the end when there were that many, a line with the files and bytes uploaded so far.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.errors import NodeAgentError, UploadError
from node_agent.logs import get_logger
from node_agent.output_record import LEDGER_NAME, Ledger, Sent, write_ledger
from node_agent.outputs import (
    DEFAULT_RETRY,
    Candidate,
    Layout,
    Retry,
    examine,
    frame_number,
    open_source,
    upload_with_retry,
    walk,
)
from node_agent.safepath import own_root
from node_agent.sync.progress import format_bytes

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from node_agent.storage import BlobStore

log = get_logger("watcher")
_CLOSE_EVENTS = sys.platform.startswith("linux")


@dataclass
class Uploaded:
    rel: str
    bytes: int
    blob: str
    url: str
    frame: int | None
    stamp: tuple[int, int]  # (size, mtime_ns) at upload
    done_at: float  # wall clock (time.time())
    source: tuple[str, ...] = ()  # the file whose bytes went up (a link's target), under out_dir


def _observe(q: queue.Queue[Path | None], out_dir: Path) -> BaseObserver:
    """A started watchdog observer putting candidate files of `out_dir` on `q`."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class _Handler(FileSystemEventHandler):
        def on_closed(self, event: FileSystemEvent) -> None:
            if not event.is_directory:
                q.put(Path(str(event.src_path)))

        def on_moved(self, event: FileSystemEvent) -> None:
            if not event.is_directory:
                q.put(Path(str(event.dest_path)))

        def on_created(self, event: FileSystemEvent) -> None:
            if not _CLOSE_EVENTS and not event.is_directory:
                q.put(Path(str(event.src_path)))

        on_modified = on_created

    observer = Observer()
    observer.schedule(_Handler(), str(out_dir), recursive=True)
    observer.start()
    return observer


def _stamp(root: Path, c: Candidate) -> tuple[int, int]:
    st = os.lstat(os.path.join(os.path.realpath(root), *c.source))  # a link's resolved target
    return st.st_size, st.st_mtime_ns


class ProgressiveUploader:
    def __init__(
        self,
        store: BlobStore | Callable[[], BlobStore],
        layout: Layout,
        out_dir: Path,
        metadata: dict[str, str],
        *,
        settle_s: float = 0.1,
        retry: Retry = DEFAULT_RETRY,
        on_fatal: Callable[[NodeAgentError], None] | None = None,
        summary_every: int = 10,
        ledger: Ledger | None = None,
    ) -> None:
        self._factory = store if callable(store) else None
        self._store = None if callable(store) else store
        self.layout, self.out_dir = layout, out_dir
        self.on_fatal = on_fatal
        self.setup_error: NodeAgentError | None = None
        self.metadata, self.settle_s, self.retry = metadata, settle_s, retry
        self.uploaded: dict[str, Uploaded] = {}
        self.failed: dict[str, str] = {}  # storage kept failing
        self.refused: dict[str, str] = {}  # never uploaded: unsafe name, link out, ...
        self._blob_of: dict[str, str] = {}  # blob name -> the file uploaded there
        self.summary_every = max(summary_every, 1)
        # the re-run record (output_record): rewritten after each frame upload
        self.ledger = ledger
        self.count = 0  # uploads done (a file re-uploaded after a change counts again)
        self.bytes = 0
        self.seconds = 0.0  # time spent uploading (not waiting for the renderer)
        self._summarised = 0
        self._q: queue.Queue[Path | None] = queue.Queue()
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._worker = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._go = threading.Event()  # the worker may make the store and upload

    def start(self, defer_store: bool = False) -> ProgressiveUploader:
        """Watch the output folder and start the worker; with `defer_store`, the watching
        begins, and the worker makes the store and uploads, only once `begin()` is called."""
        # the renderer's folder: a link left there (an earlier attempt) is replaced, not followed
        own_root(self.out_dir)
        if not defer_store:
            self._observer = _observe(self._q, self.out_dir)
            self._go.set()
        self._worker.start()
        return self

    def begin(self) -> None:
        """Watch (if not yet) and let the worker make the store and upload (idempotent;
        the thread that called start())."""
        if self._observer is None:
            self._observer = _observe(self._q, self.out_dir)
            try:
                for path in walk(self.out_dir):  # written before the watching began
                    self._q.put(path)
            except UploadError:
                pass  # the folder is a link now: finish() refuses it by name
        self._go.set()

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            raise self.setup_error or UploadError("blob store is not set up")
        return self._store

    def _setup(self) -> bool:
        if self._store is not None:
            return True
        try:
            assert self._factory is not None
            store = self._factory()
            store.ensure_container(self.layout.container)
        except NodeAgentError as e:
            self.setup_error = e
            if self.on_fatal:
                self.on_fatal(e)
            return False
        self._store = store
        return True

    def _run(self) -> None:
        self._go.wait()
        if not self._setup():
            return
        while True:
            path = self._q.get()
            if path is None:
                return
            try:
                self._consider(path)
            except Exception as e:  # never let one file end the early uploads silently
                log.warning("early upload of %r failed: %s", path.name, type(e).__name__)
                # not recorded as failed: the final sweep examines every file again and
                # names what it refuses (examine), or uploads it

    def _consider(self, path: Path) -> None:
        try:
            cand = examine(self.out_dir, path)
            if cand is None:
                return  # gone, a folder, a hidden temporary
            before = _stamp(self.out_dir, cand)
            time.sleep(self.settle_s)
            if _stamp(self.out_dir, cand) != before:
                self._q.put(path)  # still being written: look again later
                return
        except UploadError as e:
            self._refuse(path, str(e))
            return
        except OSError:
            return
        self._upload(cand, before)

    def _refuse(self, path: Path, why: str) -> None:
        rel = path.relative_to(self.out_dir).as_posix()
        with self._lock:
            if self.refused.get(rel) == why:
                return
            self.refused[rel] = why
        log.error("%s", why)

    def _upload(self, cand: Candidate, stamp: tuple[int, int]) -> None:
        rel = cand.rel
        with self._lock:
            prev = self.uploaded.get(rel)
            if prev is not None and prev.stamp == stamp:
                return
        try:
            blob = self.layout.output(rel)
        except UploadError as e:
            self._refuse(self.out_dir / rel, str(e))
            return
        with self._lock:
            owner = self._blob_of.setdefault(blob, rel)
        if owner != rel:  # 'a\\b.png' and 'a/b.png' are one blob: neither overwrites the other
            why = f"output file '{rel}' would be blob '{blob}' as '{owner}' is: refused"
            self._refuse(self.out_dir / rel, why)
            return
        frame = frame_number(rel.replace("\\", "/").rsplit("/", 1)[-1])
        meta = dict(self.metadata, **({"frame": str(frame)} if frame is not None else {}))
        t0 = time.monotonic()
        sent = Sent()
        try:
            url = upload_with_retry(
                self.store,
                lambda: open_source(self.out_dir, cand.source),
                self.layout.container,
                blob,
                meta,
                self.retry,
                name=rel,
                sent=sent,  # Content-MD5 of the bytes sent, ETag committed: the ledger
            )
        except FileNotFoundError:
            return  # removed by the renderer meanwhile: not an output any more
        except UploadError as e:
            log.warning("frame file %s not uploaded yet: %s", rel, e)
            with self._lock:
                self.failed[rel] = str(e)
            return
        seconds = time.monotonic() - t0
        self._record(blob, sent)
        with self._lock:
            self.failed.pop(rel, None)
            self.uploaded[rel] = Uploaded(
                rel, stamp[0], blob, url, frame, stamp, time.time(), cand.source
            )
            self.count += 1
            self.bytes += stamp[0]
            self.seconds += seconds
        log.info(
            "uploaded %s%s (%s) in %.2fs -> %s/%s",
            rel,
            f" (link to {'/'.join(cand.source)})" if cand.link else "",
            format_bytes(stamp[0]),
            seconds,
            self.layout.container,
            blob,
        )
        if self.count % self.summary_every == 0:
            self._summary()

    def _record(self, blob: str, sent: Sent) -> None:
        """Rewrite the task's ledger with this frame; a failure only costs a re-render."""
        if self.ledger is None:
            return
        self.ledger.add(blob, sent)
        try:
            write_ledger(
                self.store, self.layout.container, self.layout.log(LEDGER_NAME), self.ledger
            )
        except NodeAgentError as e:
            log.warning("re-run ledger not written (a re-run renders this frame again): %s", e)

    def _summary(self) -> None:
        with self._lock:
            count, size, secs = self.count, self.bytes, self.seconds
            self._summarised = count
        log.info(
            "uploads so far: %d file(s), %s, %.1fs uploading (%.1f MB/s)",
            count,
            format_bytes(size),
            secs,
            size / 1e6 / max(secs, 1e-6),
        )

    def finish(self) -> list[Uploaded]:
        """Stop watching, upload whatever is left; UploadError (one line naming every file)
        if any file was refused or is still not uploaded. `done()` holds what was uploaded."""
        self.begin()
        assert self._observer is not None
        self._observer.stop()
        self._observer.join(10)
        self._q.put(None)
        self._worker.join()
        if self.setup_error is not None:
            raise self.setup_error
        for path in walk(self.out_dir):
            try:
                cand = examine(self.out_dir, path)
                if cand is None:
                    continue
                stamp = _stamp(self.out_dir, cand)
            except UploadError as e:
                self._refuse(path, str(e))
                continue
            except OSError:
                continue
            self._upload(cand, stamp)
        if self.count >= self.summary_every and self._summarised != self.count:
            self._summary()  # the total, when there were enough uploads for summaries
        problems = self.problems()
        if problems:
            raise UploadError(
                f"{len(problems)} output file(s) not uploaded: {'; '.join(problems.values())}; "
                f"they stay in {self.out_dir} on the node"
            )
        return self.done()

    def problems(self) -> dict[str, str]:
        """Output files not in storage, and why (refused, or storage kept failing)."""
        with self._lock:
            failed = {rel: f"'{rel}': {why}" for rel, why in self.failed.items()}
            return dict(sorted({**failed, **self.refused}.items()))

    def done(self) -> list[Uploaded]:
        """Exactly the blobs this task put in storage (with the stamp of what they hold)."""
        with self._lock:
            return sorted(self.uploaded.values(), key=lambda u: u.rel)
