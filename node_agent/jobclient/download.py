"""`node-agent job download`: a job's frames from storage into one flat folder.

Frames are the blobs under `<task>/$TaskOutput/` (or render.output.prefix), each saved under
its own file name (the spec's output pattern) directly in DEST; a name two tasks uploaded
(a requeued or re-run task) is taken from the newest blob. A file already in DEST that is
identical (Content-MD5 of the blob, else the size and the hash recorded when this command
wrote it) is skipped, so a second run, or one after an interruption, fetches only what is
missing or changed. Each file is written under a temporary name, checked (its MD5 against
the blob's Content-MD5 when storage has one, else its size) and then renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.errors import StorageError
from node_agent.jobclient.outputs import LOG, JobBlobs
from node_agent.runtime import write_atomic
from node_agent.safepath import check_component, split_rel
from node_agent.storage.blob import BlobEntry

MANIFEST = ".node-agent-download.json"  # name -> what was written (etag, size, md5, mtime)
PARTIAL = ".node-agent-partial"  # files being written; renamed into DEST once checked


@dataclass
class DownloadStats:
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    logs: int = 0
    passes: int = 0


def _md5(path: Path) -> bytes:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


class Downloader:
    def __init__(self, blobs: JobBlobs, dest: Path, say: Callable[[str], None] = print) -> None:
        self.blobs = blobs
        self.dest = dest
        self.say = say
        dest.mkdir(parents=True, exist_ok=True)
        for stale in (dest / PARTIAL).glob("*"):  # what an interrupted run left half-written
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
        self.manifest_file = dest / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(self.manifest_file.read_text())
        except (OSError, ValueError):
            self.manifest = {}

    def _known(self, name: str, target: Path, blob: BlobEntry) -> bool:
        """Whether `target` already holds this blob's bytes (hashing it only when needed)."""
        try:
            st = target.stat()
        except OSError:
            return False
        if st.st_size != blob.size:
            return False
        rec = self.manifest.get(name) or {}
        same_file = rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
        if blob.content_md5:
            if same_file and rec.get("md5") == blob.content_md5.hex():
                return True
            return _md5(target) == blob.content_md5
        # no Content-MD5 in storage: identical if this command wrote it from the same version
        return same_file and rec.get("etag") == blob.etag and rec.get("md5") == _md5(target).hex()

    def fetch(self, name: str, blob: BlobEntry, stats: DownloadStats) -> None:
        check_component(name, f"frame blob '{blob.name}'")
        target = self.dest / name
        if self._known(name, target, blob):
            stats.skipped.append(name)
            return
        partial = self.dest / PARTIAL / name
        n = self.blobs.store.download_file(
            self.blobs.container, blob.name, partial, expected_size=blob.size
        )
        digest = _md5(partial)
        if blob.content_md5 and digest != blob.content_md5:
            partial.unlink(missing_ok=True)
            raise StorageError(
                f"blob '{self.blobs.container}/{blob.name}': the downloaded bytes do not match "
                f"its Content-MD5 ({digest.hex()} != {blob.content_md5.hex()}); not saved"
            )
        os.replace(partial, target)
        st = target.stat()
        self.manifest[name] = {
            "blob": blob.name,
            "etag": blob.etag,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "md5": digest.hex(),
        }
        stats.downloaded.append(name)
        stats.bytes += n

    def one_pass(self, stats: DownloadStats, logs: bool) -> None:
        listing = self.blobs.listing()
        try:
            for name, frame in sorted(self.blobs.frames(listing).items()):
                self.fetch(name, frame.blob, stats)
            if logs:
                for b in self.blobs.logs(listing):
                    task, _, rest = b.name.partition(f"/{LOG}/")
                    parts = [check_component(task, "task id"), *split_rel(rest, "log blob")]
                    rel = "/".join(["logs", *parts])
                    before = len(stats.downloaded)
                    self.fetch_log(rel, b, stats)
                    stats.logs += len(stats.downloaded) - before
        finally:
            write_atomic(self.manifest_file, json.dumps(self.manifest, indent=1).encode())
            try:
                (self.dest / PARTIAL).rmdir()
            except OSError:
                pass
        stats.passes += 1

    def fetch_log(self, rel: str, blob: BlobEntry, stats: DownloadStats) -> None:
        target = self.dest.joinpath(*rel.split("/"))
        if self._known(rel, target, blob):
            stats.skipped.append(rel)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        n = self.blobs.store.download_file(self.blobs.container, blob.name, target)
        st = target.stat()
        self.manifest[rel] = {
            "blob": blob.name,
            "etag": blob.etag,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "md5": _md5(target).hex(),
        }
        stats.downloaded.append(rel)
        stats.bytes += n


def download(
    blobs: JobBlobs,
    dest: Path,
    *,
    logs: bool = False,
    follow: Callable[[], bool] | None = None,
    poll_s: float = 5.0,
    say: Callable[[str], None] = print,
) -> DownloadStats:
    """One pass; with `follow` (a check: has the job ended?) passes every `poll_s` while the
    job runs, and a last one after it ended."""
    d = Downloader(blobs, dest, say)
    stats = DownloadStats()
    while True:
        ended = follow() if follow is not None else True
        before = len(stats.downloaded)
        d.one_pass(stats, logs)
        new = stats.downloaded[before:]
        if new and follow is not None:
            say(
                f"downloaded {len(new)} file(s): {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}"
            )
        if ended:
            return stats
        time.sleep(poll_s)
