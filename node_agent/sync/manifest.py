"""Manifests: a project's files as a canonical, hashed list; `assets push` to make one.

Container layout under the project prefix `<project>/`:
- content/<sha256>          each distinct file once, by content (never overwritten)
- manifests/<sha256>.json   canonical manifest, named by its own hash
- manifests/latest          the hash of the last pushed manifest

A manifest is JSON with sorted keys and no whitespace: {"files":[{"path","sha256","size"}...],
"version":1}, files sorted by path, so the same tree always gives the same hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.errors import AssetError
from node_agent.sync.items import Item, Source
from node_agent.sync.names import NameChecker
from node_agent.sync.progress import Progress, format_bytes
from node_agent.sync.store import ContentStore

if TYPE_CHECKING:
    from node_agent.storage import BlobStore
    from node_agent.sync.fetch import Fetcher

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    sha256: str


def project_prefix(prefix: str) -> str:
    return prefix.rstrip("/") + "/" if prefix else ""


def canonical(files: list[ManifestFile]) -> bytes:
    doc = {
        "version": 1,
        "files": [
            {"path": f.path, "sha256": f.sha256, "size": f.size}
            for f in sorted(files, key=lambda f: f.path)
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse(data: bytes, what: str) -> list[ManifestFile]:
    try:
        doc = json.loads(data)
        return [
            ManifestFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in doc["files"]
        ]
    except (ValueError, KeyError, TypeError):
        raise AssetError(f"{what}: not a valid manifest") from None


def pinned_key(sources: Sequence[Source]) -> str | None:
    """One key for a job whose every source pins a manifest (else None)."""
    if not sources or not all(s.manifest for s in sources):
        return None
    parts = [[s.container, project_prefix(s.prefix), s.dest, s.manifest] for s in sources]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class ManifestSource:
    """The files of a pinned manifest: read once from storage, then kept in the node's cache."""

    def __init__(self, fetcher: Fetcher, cstore: ContentStore, source: Source) -> None:
        assert source.manifest
        self.fetcher = fetcher
        self.source = source
        self.prefix = project_prefix(source.prefix)
        self.local = cstore.root / "manifests" / f"{source.manifest}.json"

    def read(self) -> list[ManifestFile]:
        mh = self.source.manifest
        assert mh
        what = f"manifest {mh[:12]} in '{self.source.container}/{self.prefix}'"
        if mh == "latest":  # pins.LATEST: resolved at submit / local run, never on a node
            raise AssetError(
                f"asset source '{self.source.name}': manifest: latest reached the node "
                "unresolved; submit with `batch submit` or `local run` (they pin the last "
                "push's hash) or write the hash in the spec"
            )
        if self.local.exists():
            data = self.local.read_bytes()
        else:
            data = self.fetcher.read(f"{self.prefix}manifests/{mh}.json")
        if hashlib.sha256(data).hexdigest() != mh:
            self.local.unlink(missing_ok=True)
            raise AssetError(f"{what}: content does not match the pinned hash")
        if not self.local.exists():
            from node_agent.runtime import write_atomic

            write_atomic(self.local, data)
        return parse(data, what)

    def items(self) -> Iterator[Item]:
        dest = self.source.dest.rstrip("/")
        for f in self.read():
            path = f"{dest}/{f.path}" if dest else f.path
            yield Item(path, f"{self.prefix}content/{f.sha256}", f.size, hash=f.sha256)


# --- assets push --------------------------------------------------------------
@dataclass
class PushSummary:
    files: int = 0
    hashed: int = 0
    reused: int = 0  # hash taken from the local hash cache (same size and mtime)
    bytes_hashed: int = 0
    uploaded: int = 0
    to_upload: int = 0
    bytes_uploaded: int = 0
    bytes_to_upload: int = 0
    refused: int = 0
    seconds: float = 0.0
    manifest: str = ""
    started: float = field(default_factory=time.monotonic)
    upload_started: float | None = None

    def progress_line(self, seconds: float) -> str:
        if self.upload_started is None:
            return (
                f"push: hashing: {self.files} files, {self.hashed} hashed "
                f"({format_bytes(self.bytes_hashed)}), {self.reused} reused from the hash cache"
            )
        rate = self.bytes_uploaded / 1e6 / max(time.monotonic() - self.upload_started, 1e-6)
        return (
            f"push: uploading: {self.uploaded}/{self.to_upload} files, "
            f"{format_bytes(self.bytes_uploaded)} of {format_bytes(self.bytes_to_upload)}, "
            f"{rate:.1f} MB/s"
        )

    def line(self) -> str:
        return (
            f"push: {self.files} files, {self.hashed} hashed, {self.reused} reused from the hash "
            f"cache, {self.uploaded} uploaded ({format_bytes(self.bytes_uploaded)}), "
            f"{self.refused} refused, {self.seconds:.1f}s"
        )


def push_cache_file(folder: Path, account_url: str, container: str, project: str) -> Path:
    """The local hash cache of one pushed folder (`assets push`, `batch submit --assets`):
    `$XDG_CACHE_HOME/node-agent/push-<key>.json` (else ~/.cache)."""
    key = hashlib.sha1(
        f"{folder.resolve()}|{account_url}|{container}|{project}".encode()
    ).hexdigest()[:16]
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "node-agent" / f"push-{key}.json"


def _hash(path: Path, on_chunk: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            if on_chunk:
                on_chunk(len(chunk))
    return h.hexdigest()


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative '/' path, file) of every file under `root`, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            yield full.relative_to(root).as_posix(), full


def _scan(
    entries: Iterable[tuple[str, Path]],
    cache: dict[str, list[object]],
    summary: PushSummary,
    progress: Progress | None = None,
) -> tuple[list[ManifestFile], dict[str, Path]]:
    def hashed_chunk(n: int) -> None:
        summary.bytes_hashed += n
        if progress:
            progress.tick()

    checker = NameChecker(case_insensitive=True)
    files: list[ManifestFile] = []
    sources: dict[str, Path] = {}
    for rel, full in entries:
        if not full.is_file() or checker.check(rel):
            summary.refused += 1
            continue
        st = full.stat()
        hit = cache.get(rel)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            digest = str(hit[2])
            summary.reused += 1
        else:
            digest = _hash(full, hashed_chunk)
            summary.hashed += 1
            cache[rel] = [st.st_size, st.st_mtime_ns, digest]
        files.append(ManifestFile(rel, st.st_size, digest))
        sources[rel] = full
        summary.files += 1
        if progress:
            progress.tick()
    return files, sources


def push(
    store: BlobStore,
    container: str,
    project: str,
    root: Path,
    cache_file: Path,
    threads: int = 8,
    progress: Progress | None = None,
    files: list[tuple[str, Path]] | None = None,
) -> PushSummary:
    """Upload `root`'s new content by hash and write its manifest; returns the summary.
    `files` ((path in the manifest, file to read), ...) replaces the walk of `root`
    (`assets push SCENE.blend`: node_agent.pack).

    Progress goes to stderr (stdout is the command's result): a live line on a terminal, a
    line every 10 s otherwise, and the summary line at the end.
    """
    if files is None and not root.is_dir():
        raise AssetError(f"{root}: not a folder")
    summary = PushSummary()
    if progress is None:
        progress = Progress(summary, sys.stderr)
    progress.summary = summary
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    except ValueError:
        cache = {}
    try:
        entries = _walk(root) if files is None else iter(files)
        return _push(
            store, container, project, entries, cache_file, threads, progress, summary, cache
        )
    except BaseException:
        if progress.live:  # end the live line: the error goes on a line of its own
            progress.out.write("\n")
        raise


def _push(
    store: BlobStore,
    container: str,
    project: str,
    entries: Iterable[tuple[str, Path]],
    cache_file: Path,
    threads: int,
    progress: Progress,
    summary: PushSummary,
    cache: dict[str, list[object]],
) -> PushSummary:
    files, sources = _scan(entries, cache, summary, progress)
    summary.files = len(files)
    from node_agent.runtime import write_atomic

    # atomic (an interrupted push leaves the previous cache whole), never through a link
    write_atomic(cache_file, json.dumps(cache).encode("utf-8"))
    prefix = project_prefix(project)
    store.ensure_container(container)
    present = {b.name.rsplit("/", 1)[-1] for b in store.list_blobs(container, f"{prefix}content/")}
    todo: dict[str, ManifestFile] = {}
    for f in files:
        if f.sha256 not in present:
            todo.setdefault(f.sha256, f)

    def upload(f: ManifestFile) -> int:
        # a workstation's project: its own links to files are pushed as the files they name
        store.upload_file(
            sources[f.path], container, f"{prefix}content/{f.sha256}", follow_links=True
        )
        return f.size

    summary.to_upload = len(todo)
    summary.bytes_to_upload = sum(f.size for f in todo.values())
    summary.upload_started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        pending: set[Future[int]] = {pool.submit(upload, f) for f in todo.values()}
        try:
            while pending:
                # wake up now and then so a long upload still shows progress
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    summary.bytes_uploaded += fut.result()
                    summary.uploaded += 1
                progress.tick()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    data = canonical(files)
    summary.manifest = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        mf = Path(tmp) / "m.json"
        mf.write_bytes(data)
        store.upload_file(
            mf,
            container,
            f"{prefix}manifests/{summary.manifest}.json",
            content_type="application/json",
        )
        mf.write_text(summary.manifest)
        store.upload_file(mf, container, f"{prefix}manifests/latest", content_type="text/plain")
    summary.seconds = time.monotonic() - summary.started
    progress.finish()
    return summary
