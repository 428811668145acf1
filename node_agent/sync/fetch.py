"""Verified downloads and listing for job prep's sync: version pinning and parallel ranges.

Requests go over the lean REST path (storage.rest: one urllib3 pool, a container SAS from
storage.credentials via access.py), every one under the storage retry policy
(storage.retry). With managed identity there is no key to sign a SAS: listing and
downloads use the SDK (storage.blob) under the same policy. Big blobs come in parallel ranges.

Versions are pinned: every byte of one fetch comes from one version of the blob. Each GET
carries `If-Match` on the listed ETag (or, when the caller has none, on the first response's,
and every response's ETag is compared with it), as the SDK's own downloader does
(azure-storage-blob 12.x, `_download.py`, StorageStreamDownloader: "This makes sure that
if_match is set so that we can validate that subsequent downloads are to an unmodified blob";
AzCopy's Azure Files downloader fails a chunk whose Last-Modified differs, "modified during
transfer"). A blob that changed (412, another ETag or size, a Content-MD5 of another version)
is fetched again once at its new version; twice is an AssetError of its own. The pin is a
header on the GETs made anyway: the fast path costs no extra request.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3

from node_agent.diskfull import disk_full_error, is_disk_full
from node_agent.errors import AssetError, StorageError
from node_agent.logs import get_logger
from node_agent.storage.rest import Listed, RestClient
from node_agent.storage.rest import VersionChanged as _Changed
from node_agent.storage.retry import DEFAULT_BUDGET_S, RetryPolicy, policy
from node_agent.sync.access import Access
from node_agent.sync.bodies import Buffers, Hashes, discard, open_get, read_part
from node_agent.sync.store import open_new_tmp

if TYPE_CHECKING:
    from node_agent.storage.blob import BlobStore
    from node_agent.sync.replicas import ReplicaReader

RETRY_S = DEFAULT_BUDGET_S  # policies.storage_retry_s when the caller gives none
# Big blobs come in 16 MB ranges, 4 in flight per blob and at most 16 (256 MB) per source.
# Measured on Azurite here (8 x 64 MB, 16 threads): 4 MB ranges took 2.7 s, 16 MB 1.2 s;
# the per-request cost is the server's as much as ours (AzCopy also uses 8 MB or more).
# Tried again with the reused buffers (bench_sync.py b, 3 runs, sync-20261125T204030.json):
# 8 MB x 8 ahead was no better (0.99x rclone, cpu 0.90x rclone's; 16 MB x 4: 0.92-1.02x, 0.86-0.89x).
PART_SIZE = 16 * 1024 * 1024
WINDOW = 4  # parts in flight per big blob
PARTS_IN_MEMORY = 16  # parts fetched but not yet hashed, over all blobs of a Fetcher
_CHUNK = 1024 * 1024
# Blobs above this come through reused part buffers (sync/bodies.py), ranged above PART_SIZE;
# smaller ones whole, as one `bytes`.
SMALL = _CHUNK

log = get_logger("sync")


@dataclass(frozen=True)
class Fetched:
    """What was really fetched: `size` and `etag` of the version read (`changed` when that is
    not the listed one; `content_md5` is then that version's Content-MD5 property)."""

    size: int
    sha256: str
    md5: bytes  # of the bytes; b"" for a ranged blob without a Content-MD5 to check
    etag: str = ""
    changed: bool = False
    content_md5: bytes | None = None


class _Pin:
    """The one version a fetch reads: sent as If-Match once known, checked in every answer."""

    def __init__(self, etag: str | None, size: int) -> None:
        self.etag = etag or None
        self.size = size
        self._lock = threading.Lock()

    def headers(self) -> dict[str, str]:
        return {"If-Match": f'"{self.etag}"'} if self.etag else {}

    def check(self, r: urllib3.BaseHTTPResponse) -> None:
        etag = (r.headers.get("ETag") or "").strip('"')
        rng = r.headers.get("Content-Range") or ""
        total = rng.rpartition("/")[2] if rng else r.headers.get("Content-Length")
        with self._lock:
            if self.etag is None and etag:
                self.etag = etag  # the first answer names the version
            pinned = self.etag
        if (etag and etag != pinned) or (total and total.isdigit() and int(total) != self.size):
            raise _Changed(pinned or "")


class Fetcher:
    """Downloads blobs of one container to temporary files, verifying size and Content-MD5."""

    def __init__(
        self,
        access: Access,
        container: str,
        *,
        connections: int = 32,
        retry_s: float = RETRY_S,
        retry: RetryPolicy | None = None,
        shared: Fetcher | None = None,
    ) -> None:
        """`retry`: another policy than the spec's (a replica's quick tries); `shared`: a
        Fetcher whose range threads and buffers this one uses (one container's accounts)."""
        self.access = access
        self.retry_s = retry_s
        # the one storage retry policy, for every request; its Liveness shared by them all
        self.retry = (retry or policy(retry_s)).with_liveness()
        self.container = container
        self.sas = access.container_sas(container)  # None: only the SDK can authenticate
        self.rest = RestClient(
            access.account_url,
            container,
            self.sas or "",
            self.retry,
            connections=connections,
            warn=shared is None,  # an account of replicas: sync/replicas.py says what it does
        )
        self._owner = shared is None
        if shared is None:
            self.ranges = ThreadPoolExecutor(max(4, connections // 2), thread_name_prefix="range")
            self.parts = threading.BoundedSemaphore(PARTS_IN_MEMORY)
            self.buffers = Buffers()  # one per permit at most
        else:
            self.ranges, self.parts, self.buffers = shared.ranges, shared.parts, shared.buffers
        self.changes = 0  # blobs fetched again because they changed during the sync
        self._changes_lock = threading.Lock()
        # storage.replicas: bodies from the account the node id picks (sync/replicas.py)
        self.replicas: ReplicaReader | None = None
        if shared is None and access.replicas is not None:
            from node_agent.sync.replicas import ReplicaReader

            self.replicas = ReplicaReader(self, access.replicas, connections)

    def close(self) -> None:
        if self.replicas is not None:
            self.replicas.close()
        if self._owner:
            self.ranges.shutdown(wait=True)
            self.buffers.clear()
        self.rest.close()

    @property
    def store(self) -> BlobStore:
        """The SDK client (managed identity) under this fetch's retry policy."""
        return self.access.store.with_retry(self.retry)

    def fetch(
        self,
        name: str,
        size: int,
        md5: bytes | None,
        tmp: Path,
        etag: str | None = None,
        sha256: str | None = None,
    ) -> Fetched:
        """Download a blob to `tmp` (the caller removes it) at the version `etag` names (from
        the listing; None: the first response's); a full disk is DiskFullError. With
        replicas, from the account the node picks, verified by `md5` or `sha256` (the
        content address the caller expects; for manifest content, else read from its name)."""
        what = f"blob '{self.container}/{name}'"
        try:
            if self.replicas is not None:
                return self.replicas.fetch(name, size, md5, tmp, etag, sha256, what)
            return self._fetch_pinned(name, size, md5, etag, tmp, what)
        except OSError as e:
            if not is_disk_full(e):
                raise
            tmp.unlink(missing_ok=True)  # so the free bytes reported are what is really free
            raise disk_full_error(f"{what} ({size:,} bytes)", tmp, e) from None

    def _fetch_pinned(
        self, name: str, size: int, md5: bytes | None, etag: str | None, tmp: Path, what: str
    ) -> Fetched:
        """One version, whole; a blob that changed is fetched again once at its new version."""
        for attempt in (1, 2):
            try:
                got = self._fetch(name, size, md5, etag, tmp, what)
                return replace(got, changed=attempt > 1, content_md5=md5)
            except _Changed as e:
                tmp.unlink(missing_ok=True)  # nothing of the old version is kept
                now = self._properties(name, what)
                if e.corrupt and now.md5 == md5 and now.etag == e.etag:
                    # the same version as listed: its bytes do not match its own Content-MD5
                    raise StorageError(f"{what}: content does not match its Content-MD5") from None
                if attempt > 1:
                    raise AssetError(
                        f"{what} kept changing during the sync (twice); "
                        "re-run job prep when uploads have finished"
                    ) from None
                log.warning("%s changed during sync: fetched again at its new version", what)
                with self._changes_lock:
                    self.changes += 1
                size, md5, etag = now.size, now.md5, now.etag
        raise AssertionError("unreachable")

    def _fetch(
        self, name: str, size: int, md5: bytes | None, etag: str | None, tmp: Path, what: str
    ) -> Fetched:
        pin = _Pin(etag, size)
        if self.sas is None:
            got = _hash_file(tmp, self._sdk_download(name, size, tmp, what, pin))
        elif size > min(SMALL, PART_SIZE):
            got = self._ranged(name, size, tmp, what, pin, want_md5=md5 is not None)
        else:
            data = self._get(name, None, what, pin)
            with os.fdopen(open_new_tmp(tmp), "wb") as fh:
                fh.write(data)
            got = Fetched(
                len(data),
                hashlib.sha256(data).hexdigest(),
                hashlib.md5(data).digest(),
                pin.etag or "",
            )
        if got.size != size:
            raise StorageError(f"{what}: got {got.size} bytes, expected {size}")
        if md5 and got.md5 != md5:
            raise _Changed(got.etag, corrupt=True)  # another version's bytes, or corrupt ones
        return got

    def _properties(self, name: str, what: str) -> Listed:
        """Size, ETag and Content-MD5 as they are now (only asked after a change)."""
        if self.sas is None:
            store = self.store
            props = store._run(
                lambda: store.container(self.container).get_blob_client(name).get_blob_properties(),
                what,
            )
            cs = props.content_settings
            md5 = bytes(cs.content_md5) if cs is not None and cs.content_md5 else None
            return Listed(name, int(props.size), str(props.etag).strip('"'), md5)
        h = self.rest.request(self.rest.url(name), None, what, method="HEAD").headers
        b64 = h.get("Content-MD5")
        return Listed(
            name,
            int(h.get("Content-Length") or 0),
            (h.get("ETag") or "").strip('"'),
            base64.b64decode(b64) if b64 else None,
        )

    # --- the lean path (storage.rest) ------------------------------------------
    def _get(self, name: str, rng: tuple[int, int] | None, what: str, pin: _Pin) -> bytes:
        headers = {"x-ms-range": f"bytes={rng[0]}-{rng[1]}"} if rng else {}
        headers.update(pin.headers())
        r = self.rest.request(self.rest.url(name), headers or None, what)
        pin.check(r)
        return bytes(r.data)

    def read(self, name: str) -> bytes:
        """One small blob, whole."""
        if self.sas is None:
            return self.store.read_blob(self.container, name)
        what = f"blob '{self.container}/{name}'"
        return bytes(self.rest.request(self.rest.url(name), None, what).data)

    def list(self, prefix: str) -> Iterator[Listed]:
        """The container's blobs under `prefix`, page by page (SDK when there is no SAS)."""
        if self.sas is None:
            for b in self.store.list_blobs(self.container, prefix):
                yield Listed(b.name, b.size, b.etag, b.content_md5)
            return
        yield from self.rest.list(prefix)

    def _ranged(
        self, name: str, size: int, tmp: Path, what: str, pin: _Pin, *, want_md5: bool
    ) -> Fetched:
        """Parts of PART_SIZE (one whole GET when the blob fits in one), WINDOW ahead per blob,
        each read by a range thread into a reused buffer, then hashed and written here in
        blob order (a semaphore bounds the buffers out over all blobs)."""
        hashes = Hashes(want_md5)
        starts = list(range(0, size, PART_SIZE))
        ranged = len(starts) > 1
        fd = open_new_tmp(tmp)

        def part(start: int) -> tuple[bytearray, int]:
            end = min(size, start + PART_SIZE) - 1
            buf = self.buffers.take(end - start + 1)
            try:
                self._get_part(name, (start, end) if ranged else None, what, pin, buf)
            except BaseException:
                self.buffers.give(buf)
                raise
            return buf, end - start + 1

        futures: list[Future[tuple[bytearray, int]]] = []

        def submit(block: bool) -> bool:
            # Blocks only when this blob holds no permit (nothing of it in flight), so blobs
            # waiting for permits can never hold the permits each other needs.
            if len(futures) >= len(starts) or not self.parts.acquire(blocking=block):
                return False
            futures.append(self.ranges.submit(part, starts[len(futures)]))
            return True

        hashed = 0
        try:
            for i in range(len(starts)):
                if i >= len(futures):
                    submit(block=True)
                while len(futures) < i + WINDOW and submit(block=False):
                    pass
                buf, n = futures[i].result()
                hashed = i + 1
                try:
                    hashes.update_and_write(memoryview(buf)[:n], fd)
                finally:
                    self.buffers.give(buf)
                    self.parts.release()
        finally:
            # Parts not hashed (an error): never waited for, so the error (a full disk: the
            # temporary file removed at once) is not held up by a range still in flight;
            # each gives its buffer and permit back when it ends.
            for f in futures[hashed:]:
                if f.cancel():
                    self.parts.release()
                else:
                    f.add_done_callback(self._part_abandoned)
            os.close(fd)
        return Fetched(size, hashes.sha.hexdigest(), hashes.md5_digest(), pin.etag or "")

    def _part_abandoned(self, f: Future[tuple[bytearray, int]]) -> None:
        """A part of a failed fetch has ended: its buffer (if it got one) and permit back."""
        if not f.cancelled() and f.exception() is None:
            self.buffers.give(f.result()[0])
        self.parts.release()

    def _get_part(
        self,
        name: str,
        rng: tuple[int, int] | None,
        what: str,
        pin: _Pin,
        buf: bytearray,
    ) -> None:
        """One part (or the whole blob) into `buf`: a plain GET read straight into the buffer;
        on any trouble, RestClient.request's retried path."""
        start, end = rng if rng else (0, pin.size - 1)
        view = memoryview(buf)[: end - start + 1]
        headers = {"x-ms-range": f"bytes={start}-{end}"} if rng else {}
        headers.update(pin.headers())
        r = open_get(self.rest, self.rest.url(name), headers)
        if r is not None and r.headers.get("Content-Length") != str(len(view)):
            discard(r)  # not the bytes asked for (a range not honoured): the checked path
            r = None
        if r is not None:
            try:
                pin.check(r)
            except BaseException:
                discard(r)
                raise
            if read_part(r, view):
                return
        data = self._get(name, rng, what, pin)  # retried, with the lean path's errors
        if len(data) != len(view):
            raise StorageError(f"{what}: short range {start}-{end}")
        view[:] = data

    # --- managed identity: the SDK --------------------------------------------
    def _sdk_download(self, name: str, size: int, tmp: Path, what: str, pin: _Pin) -> str:
        """The SDK pins the version itself after its first response (if_match on its ETag);
        given the listed ETag, it pins that one from the start. Returns the ETag read."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        pinned = f'"{pin.etag}"' if pin.etag else None
        store = self.store
        fh = os.fdopen(open_new_tmp(tmp), "wb")

        def get() -> str:
            fh.seek(0)  # a try again (the retry policy) starts the file again
            fh.truncate()
            try:
                d = store.container(self.container).download_blob(
                    name,
                    max_concurrency=4,
                    etag=pinned,
                    match_condition=MatchConditions.IfNotModified if pinned else None,
                )
                if d.size != size:
                    raise _Changed(pin.etag or "")
                d.readinto(fh)
            except ResourceModifiedError:
                raise _Changed(pin.etag or "") from None
            return str(d.properties.etag).strip('"')

        # transient failures retried under the policy (the SDK's own retries are off)
        with fh:
            return store._run(get, what)


def _hash_file(path: Path, etag: str) -> Fetched:
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return Fetched(n, sha.hexdigest(), md5.digest(), etag)
