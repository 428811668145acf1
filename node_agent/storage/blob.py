"""The SDK client: Blob operations node_agent needs, with errors turned into StorageError.

Credentials come from storage.credentials (the spec's `storage.auth`); every operation runs
under one storage.retry policy, so the SDK's own retries are off (`retry_total=0` below).
The lean REST path of job prep's sync is storage.rest.
"""

from __future__ import annotations

import copy
import os
import stat
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import ContainerClient, ContentSettings

from node_agent.errors import StorageError, network_reason
from node_agent.redact import Redactor
from node_agent.safepath import ContainmentError
from node_agent.storage.credentials import Credentials, StorageSettings, denied
from node_agent.storage.retry import DEFAULT_POLICY, RetryPolicy, throttled_answer


def _open_upload(path: Path, follow_links: bool) -> Any:
    if follow_links:
        return open(path, "rb")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as e:
        if os.path.islink(path):
            raise ContainmentError(
                f"'{path}' is a symbolic link: not uploaded, links are never followed"
            ) from None
        raise StorageError(f"cannot read '{path}': {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ContainmentError(f"'{path}' is not a regular file: not uploaded")
    return os.fdopen(fd, "rb")


T = TypeVar("T")
_CLIENT_KW: dict[str, Any] = {
    # No SDK retries: storage.retry wraps every call (a retry nested in another would
    # multiply the tries: 4 policy tries x 5 SDK tries = 20 requests for one upload)
    "retry_total": 0,
    "connection_timeout": 10,
    "read_timeout": 120,
    "max_single_get_size": 32 * 1024 * 1024,
    "max_single_put_size": 32 * 1024 * 1024,
}


@dataclass(frozen=True)
class BlobEntry:
    name: str
    size: int
    etag: str
    content_md5: bytes | None
    last_modified: datetime


def _describe(err: Exception, what: str, storage: StorageSettings | None = None) -> str:
    status = getattr(err, "status_code", None)
    code = str(getattr(err, "error_code", None) or "")
    if isinstance(err, ResourceNotFoundError):
        return f"{what}: not found ({code or status or 404})"
    if status in (401, 403) or isinstance(err, ClientAuthenticationError):
        if storage is not None:
            return denied(what, status or "", code, storage)
        return f"{what}: authentication failed (check the credentials in storage.auth)"
    if isinstance(err, ServiceRequestError):
        return f"{what}: storage is unreachable ({network_reason(str(err))})"
    if isinstance(err, HttpResponseError):
        return f"{what}: storage answered {err.status_code} {err.reason}"
    return f"{what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


class _Throttled(StorageError):
    """503 ServerBusy or 429 through the SDK: storage.retry gives it 10x the budget, as on
    the REST path (HttpResponseError.error_code is the x-ms-error-code header)."""

    throttled = True


class BlobStore:
    """Blob operations node_agent needs, with errors turned into StorageError; each one
    under `retry` (the spec's policy: storage.retry.policy(spec.policies))."""

    def __init__(
        self,
        storage: StorageSettings,
        redactor: Redactor,
        env: Mapping[str, str] | None = None,
        *,
        probe: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        """`probe`: one try per request and a short connect timeout (doctor's cheap check)."""
        kw = {**_CLIENT_KW, "connection_timeout": 5} if probe else _CLIENT_KW
        self.account_url = storage.account_url
        self.storage = storage
        self.redactor = redactor
        self.credentials = Credentials(storage, redactor, os.environ if env is None else env)
        self.retry = (retry or DEFAULT_POLICY).once() if probe else (retry or DEFAULT_POLICY)
        self.sas: str | None = self.credentials.sas() if storage.auth.kind == "sas" else None
        self.service = self.credentials.sdk_service(**kw)

    def with_retry(self, retry: RetryPolicy) -> BlobStore:
        """The same client under another policy (the caller's budget)."""
        other = copy.copy(self)
        other.retry = retry
        return other

    def _run(self, fn: Callable[[], T], what: str) -> T:
        """`fn()` (SDK calls) under the policy, AzureError as a one-line StorageError;
        a refusal (not found, denied) is not retried."""

        def attempt() -> T:
            try:
                return fn()
            except AzureError as e:
                raise self._err(e, what) from None

        return self.retry.call(attempt, only_transient=True)

    def probe(self) -> None:
        """One cheap authenticated request (list one container); StorageError if it fails."""

        def first_page() -> None:
            next(iter(self.service.list_containers(results_per_page=1).by_page()), None)

        self._run(first_page, self.account_url)

    def _err(self, err: Exception, what: str) -> StorageError:
        status = getattr(err, "status_code", None)
        transient = isinstance(err, ServiceRequestError) or (
            isinstance(err, HttpResponseError) and status in (408, 429, 500, 502, 503, 504)
        )
        cls = (
            _Throttled
            if throttled_answer(status, getattr(err, "error_code", None))
            else StorageError
        )
        return cls(self.redactor(_describe(err, what, self.storage)), transient=transient)

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def ensure_container(self, name: str) -> None:
        def create() -> None:
            try:
                self.container(name).create_container()
            except ResourceExistsError:
                pass

        self._run(create, f"container '{name}'")

    def list_blobs(self, container: str, prefix: str = "") -> Iterator[BlobEntry]:
        """The blobs under `prefix`, page by page (each page under the policy)."""
        what = f"listing container '{container}' prefix '{prefix}'"
        token: str | None = None
        while True:

            def page(token: str | None = token) -> tuple[list[Any], str | None]:
                pages = self.container(container).list_blobs(name_starts_with=prefix or None)
                it = pages.by_page(continuation_token=token)
                items = list(next(it, []))
                return items, it.continuation_token  # type: ignore[attr-defined]

            items, token = self._run(page, what)
            for b in items:
                md5 = b.content_settings.content_md5 if b.content_settings else None
                yield BlobEntry(
                    b.name,
                    int(b.size or 0),
                    str(b.etag).strip('"'),
                    bytes(md5) if md5 else None,
                    b.last_modified,
                )
            if not token:
                return

    def download_file(
        self, container: str, blob: str, dest: Path, expected_size: int | None = None
    ) -> int:
        """Download to a temporary name beside `dest`, check the size, rename into place."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.part"

        def get() -> int:
            with open(tmp, "wb") as fh:
                stream = self.container(container).download_blob(blob, max_concurrency=4)
                return int(stream.readinto(fh))

        try:
            n = self._run(get, f"blob '{container}/{blob}'")
            if expected_size is not None and n != expected_size:
                raise StorageError(
                    f"blob '{container}/{blob}': got {n} bytes, expected {expected_size}"
                )
            os.replace(tmp, dest)
            return n
        finally:
            tmp.unlink(missing_ok=True)

    def upload_file(
        self,
        path: Path,
        container: str,
        blob: str,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        follow_links: bool = False,
    ) -> str:
        """Upload one file (overwriting); returns the blob URL without any SAS.

        On a node the file is opened without following a link and must be a regular file (a
        log a task swapped for a link to another file is refused, its target never read);
        `follow_links` is for a workstation's own files (`assets push`, `submit --package`)."""
        client = self.container(container).get_blob_client(blob)

        def put() -> None:
            with _open_upload(path, follow_links) as fh:
                client.upload_blob(
                    fh,
                    overwrite=True,
                    metadata=metadata,
                    max_concurrency=4,
                    content_settings=ContentSettings(content_type=content_type)
                    if content_type
                    else None,
                )

        self._run(put, f"uploading '{path.name}' to '{container}/{blob}'")
        return str(client.url).split("?")[0]

    def read_blob(self, container: str, blob: str) -> bytes:
        def get() -> bytes:
            return bytes(self.container(container).download_blob(blob).readall())

        return self._run(get, f"blob '{container}/{blob}'")
