"""Lean, verified downloads: one pooled HTTP session, a container SAS, ranges for big blobs.

The SDK is used for auth (making the SAS) and listing; each GET goes over a shared
`requests.Session` (trust_env off: no per-request proxy lookup). With managed
identity there is no key to sign a SAS, so downloads fall back to the SDK.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from node_agent.errors import StorageError
from node_agent.storage import BlobStore

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 6
PART_SIZE = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str
    md5: bytes


class _Retry(Exception):
    pass


def container_sas(store: BlobStore, container: str, hours: float = 6.0) -> str | None:
    """A read-only SAS for the container: the store's own SAS, one signed with the key, or None."""
    if store.sas:
        return store.sas
    cred = getattr(store.service, "credential", None)
    key = getattr(cred, "account_key", None)
    account = getattr(cred, "account_name", None)
    if not key or not account:
        return None
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    now = datetime.now(timezone.utc)
    sas = generate_container_sas(
        account,
        container,
        account_key=key,
        permission=ContainerSasPermissions(read=True, list=True),
        start=now - timedelta(minutes=5),
        expiry=now + timedelta(hours=hours),
    )
    store.redactor.add(sas)
    return str(sas)


class Fetcher:
    """Downloads blobs of one container to temporary files, verifying size and Content-MD5."""

    def __init__(self, store: BlobStore, container: str, *, connections: int = 32) -> None:
        self.store = store
        self.container = container
        self.base = store.container(container).url.split("?")[0].rstrip("/")
        self.sas = container_sas(store, container)
        self.session = requests.Session()
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=connections, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.ranges = ThreadPoolExecutor(4, thread_name_prefix="range")

    def close(self) -> None:
        self.ranges.shutdown(wait=True)
        self.session.close()

    def fetch(self, name: str, size: int, md5: bytes | None, tmp: Path) -> Fetched:
        what = f"blob '{self.container}/{name}'"
        if self.sas is None:
            self._sdk_download(name, tmp, what)
            got = _hash_file(tmp)
        elif size > PART_SIZE:
            self._ranged(name, size, tmp, what)
            got = _hash_file(tmp)
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
        return f"{self.base}/{quote(name, safe='/')}?{self.sas}"

    def _get(self, name: str, rng: tuple[int, int] | None, what: str) -> bytes:
        headers = {"x-ms-range": f"bytes={rng[0]}-{rng[1]}"} if rng else {}
        for attempt in range(ATTEMPTS):
            try:
                r = self.session.get(self._url(name), headers=headers, timeout=(10, 300))
                if r.status_code in (200, 206):
                    return r.content
                if r.status_code not in RETRY_STATUS:
                    raise StorageError(f"{what}: storage answered {r.status_code} {r.reason}")
                problem = f"{r.status_code} {r.reason}"
            except (requests.ConnectionError, requests.Timeout) as e:
                problem = type(e).__name__
            if attempt + 1 < ATTEMPTS:
                time.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))
        raise StorageError(f"{what}: failed after {ATTEMPTS} attempts ({problem})")

    def _ranged(self, name: str, size: int, tmp: Path, what: str) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, size)

            def part(start: int) -> None:
                end = min(size, start + PART_SIZE) - 1
                data = self._get(name, (start, end), what)
                if len(data) != end - start + 1:
                    raise StorageError(f"{what}: short range {start}-{end}")
                os.pwrite(fd, data, start)

            for f in [self.ranges.submit(part, s) for s in range(0, size, PART_SIZE)]:
                f.result()
        finally:
            os.close(fd)

    # --- managed identity: the SDK --------------------------------------------
    def _sdk_download(self, name: str, tmp: Path, what: str) -> None:
        from azure.core.exceptions import AzureError

        try:
            with open(tmp, "wb") as fh:
                self.store.container(self.container).download_blob(
                    name, max_concurrency=4
                ).readinto(fh)
        except AzureError as e:
            raise StorageError(f"{what}: {type(e).__name__}") from None


def _hash_file(path: Path) -> Fetched:
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return Fetched(n, sha.hexdigest(), md5.digest())
