"""Lean, verified downloads and listing: one urllib3 connection pool, a container SAS.

Access (access.py) gives a container SAS (signed from the key, or the spec's own).
Each GET and each listing page goes over a shared urllib3 pool: measured here, the SDK costs ~0.7 ms of CPU per listed blob (model
deserialization) and ~2 ms per small download; the lean path a fraction of that.
With managed identity there is no key to sign a SAS: listing and downloads use the SDK.
Big blobs are fetched in parallel ranges.
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, unquote
from xml.etree import ElementTree

import urllib3

from node_agent.diskfull import disk_full_error, is_disk_full
from node_agent.errors import StorageError, network_reason
from node_agent.logs import get_logger
from node_agent.sync.access import Access

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# At least ATTEMPTS tries, and more while the first failure is younger than RETRY_S
# (the spec's policies.storage_retry_s).
ATTEMPTS = 6
RETRY_S = 60.0
# Big blobs come in 16 MB ranges, 4 in flight per blob and at most 16 (256 MB) per source.
# Measured on Azurite here (8 x 64 MB, 16 threads): 4 MB ranges took 2.7 s, 16 MB 1.2 s;
# the per-request cost is the server's as much as ours (AzCopy also uses 8 MB or more).
PART_SIZE = 16 * 1024 * 1024
WINDOW = 4  # parts in flight per big blob
PARTS_IN_MEMORY = 16  # parts fetched but not yet written, over all blobs of a Fetcher
_CHUNK = 1024 * 1024

log = get_logger("sync")


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str
    md5: bytes


class Listed(NamedTuple):
    name: str
    size: int
    etag: str
    md5: bytes | None


class Fetcher:
    """Downloads blobs of one container to temporary files, verifying size and Content-MD5."""

    def __init__(
        self, access: Access, container: str, *, connections: int = 32, retry_s: float = RETRY_S
    ) -> None:
        self.access = access
        self.retry_s = retry_s
        self._warned = False  # one warning per source synced, not one per request in flight
        self.container = container
        self.base = f"{access.account_url}/{container}"
        self.sas = access.container_sas(container)
        self.path = urllib3.util.parse_url(self.base).path or ""
        self.pool = urllib3.connection_from_url(
            self.base,
            maxsize=connections,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=300),
        )
        self.ranges = ThreadPoolExecutor(max(4, connections // 2), thread_name_prefix="range")
        self.parts = threading.BoundedSemaphore(PARTS_IN_MEMORY)

    def close(self) -> None:
        self.ranges.shutdown(wait=True)
        self.pool.close()

    def fetch(self, name: str, size: int, md5: bytes | None, tmp: Path) -> Fetched:
        """Download a blob to `tmp` (the caller removes it); a full disk is DiskFullError."""
        what = f"blob '{self.container}/{name}'"
        try:
            return self._fetch(name, size, md5, tmp, what)
        except OSError as e:
            if not is_disk_full(e):
                raise
            tmp.unlink(missing_ok=True)  # so the free bytes reported are what is really free
            raise disk_full_error(f"{what} ({size:,} bytes)", tmp, e) from None

    def _fetch(self, name: str, size: int, md5: bytes | None, tmp: Path, what: str) -> Fetched:
        if self.sas is None:
            self._sdk_download(name, tmp, what)
            got = _hash_file(tmp)
        elif size > PART_SIZE:
            got = self._ranged(name, size, tmp, what, want_md5=md5 is not None)
        else:
            data = self._get(name, None, what)
            with open(tmp, "wb") as fh:
                fh.write(data)
            got = Fetched(len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).digest())
        if got.size != size:
            raise StorageError(f"{what}: got {got.size} bytes, expected {size}")
        if md5 and got.md5 != md5:
            raise StorageError(f"{what}: content does not match its Content-MD5")
        return got

    # --- the lean path ------------------------------------------------------
    def _url(self, name: str) -> str:
        return f"{self.path}/{quote(name, safe='/')}?{self.sas}"

    def _get(self, name: str, rng: tuple[int, int] | None, what: str) -> bytes:
        headers = {"x-ms-range": f"bytes={rng[0]}-{rng[1]}"} if rng else None
        return self._request(self._url(name), headers, what)

    def _request(self, url: str, headers: dict[str, str] | None, what: str) -> bytes:
        """GET with retries: connection errors and 429/5xx are retried with backoff for at
        least ATTEMPTS tries and for `retry_s` seconds, so a storage outage of a few seconds
        (a restarted front end, a throttling burst) costs time, not the phase."""
        problem = ""
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                r = self.pool.request("GET", url, headers=headers, preload_content=True)
                if r.status in (200, 206):
                    return bytes(r.data)
                if r.status not in RETRY_STATUS:
                    code = r.headers.get("x-ms-error-code", "")
                    if r.status == 404:
                        raise StorageError(f"{what}: not found ({code or 404})")
                    if r.status == 403:
                        raise StorageError(
                            f"{what}: access denied ({code or 403}; check storage.auth)"
                        )
                    raise StorageError(f"{what}: storage answered {r.status} {code}".rstrip())
                problem = f"{r.status}"
            except (urllib3.exceptions.HTTPError, OSError) as e:
                problem = network_reason(str(e))
            attempt += 1
            now = time.monotonic()
            first_failure = first_failure if first_failure is not None else now
            waited = now - first_failure
            if not self._warned:
                self._warned = True
                log.warning("%s: %s; retrying for up to %.0f s", what, _said(problem), self.retry_s)
            if attempt >= ATTEMPTS and waited >= self.retry_s:
                break
            time.sleep(min(8.0, 0.25 * 2 ** min(attempt - 1, 5)) * (0.5 + random.random()))
        raise StorageError(f"{what}: {_said(problem)} ({attempt} attempts over {waited:.0f} s)")

    def read(self, name: str) -> bytes:
        """One small blob, whole."""
        if self.sas is None:
            return self.access.store.read_blob(self.container, name)
        return self._get(name, None, f"blob '{self.container}/{name}'")

    def list(self, prefix: str) -> Iterator[Listed]:
        """The container's blobs under `prefix`, page by page (SDK when there is no SAS)."""
        if self.sas is None:
            for b in self.access.store.list_blobs(self.container, prefix):
                yield Listed(b.name, b.size, b.etag, b.content_md5)
            return
        marker = ""
        what = f"listing container '{self.container}' prefix '{prefix}'"
        while True:
            url = (
                f"{self.path}?restype=container&comp=list&maxresults=5000"
                f"&prefix={quote(prefix, safe='')}&marker={quote(marker, safe='')}&{self.sas}"
            )
            root = ElementTree.fromstring(self._request(url, None, what))
            for el in root.iter("Blob"):
                yield _entry(el)
            marker = root.findtext("NextMarker") or ""
            if not marker:
                return

    def _ranged(self, name: str, size: int, tmp: Path, what: str, *, want_md5: bool) -> Fetched:
        """Parallel ranges, hashed and written in order as they arrive (WINDOW parts ahead per
        blob; a semaphore keeps the parts held in memory bounded over all blobs)."""
        sha, md5 = hashlib.sha256(), hashlib.md5() if want_md5 else None
        starts = list(range(0, size, PART_SIZE))

        def part(start: int) -> bytes:
            end = min(size, start + PART_SIZE) - 1
            data = self._get(name, (start, end), what)
            if len(data) != end - start + 1:
                raise StorageError(f"{what}: short range {start}-{end}")
            return data

        futures: list[Future[bytes]] = []
        held = 0  # permits this blob holds: one per submitted, not yet written part

        def submit(block: bool) -> bool:
            # Blocks only when this blob holds no permit (nothing of it in flight), so blobs
            # waiting for permits can never hold the permits each other needs.
            nonlocal held
            if len(futures) >= len(starts) or not self.parts.acquire(blocking=block):
                return False
            held += 1
            futures.append(self.ranges.submit(part, starts[len(futures)]))
            return True

        with open(tmp, "wb") as fh:
            try:
                for i in range(len(starts)):
                    if i >= len(futures):
                        submit(block=True)
                    while len(futures) < i + WINDOW and submit(block=False):
                        pass
                    data = futures[i].result()
                    sha.update(data)
                    if md5 is not None:
                        md5.update(data)
                    fh.write(data)
                    del data
                    self.parts.release()
                    held -= 1
            finally:
                for f in futures:
                    f.cancel()
                for _ in range(held):
                    self.parts.release()
        return Fetched(size, sha.hexdigest(), md5.digest() if md5 is not None else b"")

    # --- managed identity: the SDK --------------------------------------------
    def _sdk_download(self, name: str, tmp: Path, what: str) -> None:
        from azure.core.exceptions import AzureError

        try:
            with open(tmp, "wb") as fh:
                self.access.store.container(self.container).download_blob(
                    name, max_concurrency=4
                ).readinto(fh)
        except AzureError as e:
            raise StorageError(f"{what}: {type(e).__name__}") from None


def _said(problem: str) -> str:
    """'storage answered 503' for a status, 'storage is unreachable (connection refused)' else."""
    if problem.isdigit():
        return f"storage answered {problem}"
    return f"storage is unreachable ({problem})"


def _entry(b: ElementTree.Element) -> Listed:
    name_el = b.find("Name")
    name = (name_el.text or "") if name_el is not None else ""
    if name_el is not None and name_el.get("Encoded") == "true":
        name = unquote(name)
    props = b.find("Properties")
    get = props.findtext if props is not None else (lambda _k: None)
    md5 = get("Content-MD5")
    return Listed(
        name,
        int(get("Content-Length") or 0),
        (get("Etag") or "").strip('"'),
        base64.b64decode(md5) if md5 else None,
    )


def _hash_file(path: Path) -> Fetched:
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return Fetched(n, sha.hexdigest(), md5.digest())
