"""`node-agent job download`: a job's frames from storage into one flat folder.

Frames are the blobs under `<task>/$TaskOutput/` (or render.output.prefix), each saved under
its own file name (the spec's output pattern) directly in DEST; a name two tasks uploaded
(a requeued or re-run task) is taken from the newest blob. A file already in DEST that is
identical (Content-MD5 of the blob, else the size and the hash recorded when this command
wrote it) is skipped, so a second run, or one after an interruption, fetches only what is
missing or changed. Each file is written under a temporary name, checked (its MD5 against
the blob's Content-MD5 when storage has one, else its size) and then renamed into place.

Blob names come from every task's renderer: each goes through safepath (the whole name and
the file name it gets), and the download's own names (its record, its folder of partial
files, `logs`) are refused as frame names; a refused blob is named, the others are still
downloaded, and the command then exits 5. In DEST nothing is followed: `.node-agent-partial/`
and `logs/...` are walked with lstat (a link there is replaced by a real folder, its target
untouched) and a frame whose name is a link is written over the link, not through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node_agent.errors import StorageError, UsageError
from node_agent.jobclient.outputs import LOG, JobBlobs
from node_agent.runtime import write_atomic
from node_agent.safepath import ContainmentError, ensure_dirs, rel_problem
from node_agent.storage.blob import BlobEntry

MANIFEST = ".node-agent-download.json"  # name -> what was written (etag, size, md5, mtime)
PARTIAL = ".node-agent-partial"  # files being written; renamed into DEST once checked
LOGS = "logs"  # --logs: DEST/logs/<task>/...
RESERVED = frozenset({MANIFEST, PARTIAL, LOGS})  # never a frame's name in DEST


@dataclass
class DownloadStats:
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes: int = 0
    logs: int = 0
    passes: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # blob name -> why
    changed: set[str] = field(default_factory=set)  # changed while read in the last pass
    collisions: set[str] = field(default_factory=set)  # flat names said to collide


class _Changed(Exception):
    """The bytes read are not the listed version: the blob was written meanwhile."""


CHANGED_PASSES = 3  # passes a blob may keep changing in before the download gives up


def frame_problem(name: str, blob_name: str) -> str | None:
    """Why the blob `blob_name` cannot be saved as DEST/`name` (None: it can)."""
    problem = rel_problem(blob_name)
    if problem:
        return f"its name {problem}"
    problem = rel_problem(name)
    if problem is None and ("/" in name or "\\" in name):
        problem = "contains a path separator"
    if problem:
        return f"its file name '{name}' {problem}"
    if name in RESERVED or name.startswith(".node-agent-"):
        return f"its file name '{name}' is the download's own (reserved in DEST)"
    return None


def fold(name: str) -> str:
    """The name as a case-insensitive file system may see it (macOS, Windows: a TD's
    workstation): two names that fold alike are one file there."""
    return unicodedata.normalize("NFKC", name).casefold()


def same_file_names(names: list[str]) -> dict[str, str]:
    """Each name (but the first in sorted order) that folds like an earlier one -> that one."""
    first: dict[str, str] = {}
    clash = {}
    for name in sorted(names):
        key = fold(name)
        if key in first:
            clash[name] = first[key]
        else:
            first[key] = name
    return clash


def refused_error(job: str, refused: dict[str, str]) -> ContainmentError:
    """Exit 5 naming the blobs a download left out and why (the first few)."""
    shown = [f"'{b}': {why}" for b, why in sorted(refused.items())[:5]]
    more = f" (+{len(refused) - 5} more)" if len(refused) > 5 else ""
    return ContainmentError(
        f"job {job}: {len(refused)} blob(s) refused, not downloaded (a name that would leave "
        f"DEST, take the download's own files or overwrite another frame): "
        + "; ".join(shown)
        + more
    )


def _record(doc: Any) -> dict[str, Any]:
    """The download record as written, else empty (a damaged one is no record: frames are
    then checked by their bytes)."""
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, dict)}


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
        if dest.exists() and not dest.is_dir():
            raise UsageError(f"DEST '{dest}' is not a folder (frames go into a folder)")
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"DEST '{dest}': cannot make the folder: {e.strerror or e}") from None
        # what an interrupted run left half-written (a link there is replaced, never entered)
        with os.scandir(self._partial_dir()) as it:
            for stale in it:
                if not stale.is_dir(follow_symlinks=False):
                    os.unlink(stale.path)
        self.manifest_file = dest / MANIFEST
        try:
            self.manifest: dict[str, Any] = _record(json.loads(self.manifest_file.read_text()))
        except (OSError, ValueError):
            self.manifest = {}

    def _partial_dir(self) -> str:
        return ensure_dirs(self.dest, [PARTIAL], replace_links=True, check_root=False)

    def _known(self, name: str, target: Path, blob: BlobEntry) -> bool:
        """Whether `target` already holds this blob's bytes (hashing it only when needed)."""
        try:
            st = target.lstat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != blob.size:  # a link is never trusted
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
        problem = frame_problem(name, blob.name)
        if problem:
            if blob.name not in stats.refused:
                self.say(f"refused blob '{blob.name}': {problem}")
            stats.refused[blob.name] = problem
            return
        target = self.dest / name
        if self._known(name, target, blob):
            stats.skipped.append(name)
            return
        partial = Path(self._partial_dir(), name)
        n = self.blobs.store.download_file(self.blobs.container, blob.name, partial)
        digest = _md5(partial)
        if n != blob.size or (blob.content_md5 and digest != blob.content_md5):
            # another version than the one listed (a retried task uploading it again):
            # not saved; the next pass lists and fetches its new version
            partial.unlink(missing_ok=True)
            raise _Changed(blob.name)
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
        stats.changed = set()
        try:
            frames = self.blobs.frames(listing)
            for name, count in sorted(self.blobs.name_counts.items()):
                if count > 1 and name not in stats.collisions:
                    stats.collisions.add(name)
                    self.say(
                        f"warning: {count} blobs are named '{name}' (tasks writing the same "
                        "file name: does the output pattern hold the frame number?); DEST "
                        "keeps the newest"
                    )
            clash = same_file_names(list(frames))
            for name, frame in sorted(frames.items()):
                if name in clash:
                    why = (
                        f"its file name '{name}' differs from '{clash[name]}' only in case or "
                        "Unicode form: one file on a case-insensitive file system (macOS, "
                        "Windows), where it would overwrite that frame"
                    )
                    if frame.blob.name not in stats.refused:
                        self.say(f"refused blob '{frame.blob.name}': {why}")
                    stats.refused[frame.blob.name] = why
                    continue
                try:
                    self.fetch(name, frame.blob, stats)
                except _Changed:
                    stats.changed.add(frame.blob.name)
                    self.say(f"'{frame.blob.name}' changed during the download: fetched again")
            if logs:
                for b in self.blobs.logs(listing):
                    task, _, rest = b.name.partition(f"/{LOG}/")
                    problem = rel_problem(b.name)
                    if problem is None and ("/" in task or "\\" in task or not rest):
                        problem = "is not <task>/$TaskLog/<file>"
                    if problem:
                        if b.name not in stats.refused:
                            self.say(f"refused blob '{b.name}': its name {problem}")
                        stats.refused[b.name] = f"its name {problem}"
                        continue
                    rel = "/".join([LOGS, task, *rest.replace("\\", "/").split("/")])
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
        parts = rel.split("/")
        target = Path(ensure_dirs(self.dest, parts[:-1], replace_links=True, check_root=False))
        target = target / parts[-1]
        if self._known(rel, target, blob):
            stats.skipped.append(rel)
            return
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
    changing = 0
    while True:
        ended = follow() if follow is not None else True
        before = len(stats.downloaded)
        d.one_pass(stats, logs)
        changing = changing + 1 if stats.changed else 0
        if stats.changed and ended:
            if changing >= CHANGED_PASSES:
                raise StorageError(
                    f"blob(s) kept changing while downloaded ({CHANGED_PASSES} passes): "
                    + ", ".join(f"'{blobs.container}/{b}'" for b in sorted(stats.changed)[:5])
                )
            continue  # fetch their new version now
        new = stats.downloaded[before:]
        if new and follow is not None:
            say(
                f"downloaded {len(new)} file(s): {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}"
            )
        if ended:
            return stats
        time.sleep(poll_s)
