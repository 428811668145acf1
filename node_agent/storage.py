"""The one place that talks to Blob storage.

Credentials come from the job spec's `storage.auth`; secrets are read from the
environment variable it names and registered with the redactor before any use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from node_agent.azurite import emulator_connection_string
from node_agent.errors import StorageError, network_reason
from node_agent.redact import Redactor
from node_agent.spec import Storage

_CLIENT_KW: dict[str, Any] = {
    "retry_total": 4,
    "retry_backoff_factor": 0.5,
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


def _account_name(url: str) -> str:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if host in ("127.0.0.1", "localhost") or host.replace(".", "").isdigit():
        return parsed.path.strip("/").split("/")[0]
    return host.split(".")[0]


def _describe(err: Exception, what: str) -> str:
    if isinstance(err, ResourceNotFoundError):
        return f"{what}: not found"
    if isinstance(err, ClientAuthenticationError):
        return f"{what}: authentication failed (check the credentials in storage.auth)"
    if isinstance(err, ServiceRequestError):
        return f"{what}: storage is unreachable ({network_reason(str(err))})"
    if isinstance(err, HttpResponseError):
        return f"{what}: storage answered {err.status_code} {err.reason}"
    return f"{what}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


class BlobStore:
    """Blob operations node_agent needs, with errors turned into StorageError."""

    def __init__(
        self,
        storage: Storage,
        redactor: Redactor,
        env: Mapping[str, str] | None = None,
        *,
        probe: bool = False,
    ) -> None:
        """`probe`: one try per request and a short connect timeout (doctor's cheap check)."""
        env = os.environ if env is None else env
        kw = {**_CLIENT_KW, "retry_total": 0, "connection_timeout": 5} if probe else _CLIENT_KW
        self.account_url = storage.account_url
        self.redactor = redactor
        auth = storage.auth
        secret = env.get(auth.env, "") if auth.env else ""
        if auth.env and not secret:
            raise StorageError(f"storage.auth.env: environment variable {auth.env} is not set")
        redactor.add(secret)
        self.sas: str | None = None
        if auth.kind == "emulator":
            self.service = BlobServiceClient.from_connection_string(
                emulator_connection_string(storage.account_url), **kw
            )
        elif auth.kind == "connection_string":
            self.service = BlobServiceClient.from_connection_string(secret, **kw)
        elif auth.kind == "sas":
            self.sas = secret.lstrip("?")
            redactor.add(self.sas)
            self.service = BlobServiceClient(storage.account_url, credential=self.sas, **kw)
        elif auth.kind == "account_key":
            cred = {"account_name": _account_name(storage.account_url), "account_key": secret}
            self.service = BlobServiceClient(storage.account_url, credential=cred, **kw)
        else:
            from azure.identity import ManagedIdentityCredential

            mi = (
                ManagedIdentityCredential(client_id=auth.client_id)
                if auth.client_id
                else (ManagedIdentityCredential())
            )
            self.service = BlobServiceClient(storage.account_url, credential=mi, **kw)

    def probe(self) -> None:
        """One cheap authenticated request (list one container); StorageError if it fails."""
        try:
            next(iter(self.service.list_containers(results_per_page=1).by_page()), None)
        except AzureError as e:
            raise self._err(e, self.account_url) from None

    def _err(self, err: Exception, what: str) -> StorageError:
        status = getattr(err, "status_code", None)
        transient = isinstance(err, ServiceRequestError) or (
            isinstance(err, HttpResponseError) and status in (408, 429, 500, 502, 503, 504)
        )
        return StorageError(self.redactor(_describe(err, what)), transient=transient)

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def ensure_container(self, name: str) -> None:
        try:
            self.container(name).create_container()
        except ResourceExistsError:
            pass
        except AzureError as e:
            raise self._err(e, f"container '{name}'") from None

    def list_blobs(self, container: str, prefix: str = "") -> Iterator[BlobEntry]:
        try:
            for b in self.container(container).list_blobs(name_starts_with=prefix or None):
                md5 = b.content_settings.content_md5 if b.content_settings else None
                yield BlobEntry(
                    b.name,
                    int(b.size or 0),
                    str(b.etag).strip('"'),
                    bytes(md5) if md5 else None,
                    b.last_modified,
                )
        except AzureError as e:
            raise self._err(e, f"listing container '{container}' prefix '{prefix}'") from None

    def download_file(
        self, container: str, blob: str, dest: Path, expected_size: int | None = None
    ) -> int:
        """Download to a temporary name beside `dest`, check the size, rename into place."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.part"
        try:
            with open(tmp, "wb") as fh:
                stream = self.container(container).download_blob(blob, max_concurrency=4)
                n = stream.readinto(fh)
            if expected_size is not None and n != expected_size:
                raise StorageError(
                    f"blob '{container}/{blob}': got {n} bytes, expected {expected_size}"
                )
            os.replace(tmp, dest)
            return int(n)
        except AzureError as e:
            raise self._err(e, f"blob '{container}/{blob}'") from None
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
    ) -> str:
        """Upload one file (overwriting); returns the blob URL without any SAS."""
        client = self.container(container).get_blob_client(blob)
        try:
            with open(path, "rb") as fh:
                client.upload_blob(
                    fh,
                    overwrite=True,
                    metadata=metadata,
                    max_concurrency=4,
                    content_settings=ContentSettings(content_type=content_type)
                    if content_type
                    else None,
                )
        except AzureError as e:
            raise self._err(e, f"uploading '{path.name}' to '{container}/{blob}'") from None
        return client.url.split("?")[0]

    def read_blob(self, container: str, blob: str) -> bytes:
        try:
            return bytes(self.container(container).download_blob(blob).readall())
        except AzureError as e:
            raise self._err(e, f"blob '{container}/{blob}'") from None
