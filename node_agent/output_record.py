"""What a render task records about each frame it uploads, and how a re-run reads it back.

Batch runs a task again after a spot/low-priority node is preempted, after a retry, or on a
requeue. A frame the earlier run already put in storage whole is not rendered again.

Two records, both written by the uploader:
- on the frame blob: its Content-MD5 property, the MD5 of exactly the bytes sent, computed
  from the open file just before the upload (the same handle is then rewound and sent; a
  file that changes afterwards is uploaded again by the final sweep, with its new MD5);
- next to the outputs, the task's ledger `<task>/$TaskLog/uploaded.json`: the job, the
  task, the SHA-256 of the job spec the task ran, and for each frame blob the size, the
  Content-MD5 and the ETag the upload returned. It is rewritten (one small Put Blob) after
  each frame upload, so a node that goes away mid-task leaves it naming every frame that
  was committed before.

A blob upload is committed at once (Put Blob, or Put Block List after the blocks), so a
task killed mid-upload leaves no partial blob. A frame counts as already in storage when
the ledger names it for this job, this task and this same spec, and the blob listed now has
the ledger's ETag, size and Content-MD5: exactly the blob that run committed. Anything else
(no ledger, another spec under the same job id, a blob rewritten since) is rendered again.

The ledger also carries the attempt's verdict (`ended`: exit code, reason, and why no retry
fixes it) when the attempt ended with a cause no retry fixes, written once after its logs
and summary were uploaded: Batch retries every non-zero exit, and the retry reads it with
the ledger it reads anyway, then ends at once (phases/render_rerun). An attempt killed
before its summary (a preempted node) leaves no verdict: its retry renders.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from node_agent.spec_storage import Storage
    from node_agent.storage import BlobStore
    from node_agent.storage.rest import RestClient
    from node_agent.storage.retry import RetryPolicy

LEDGER_NAME = "uploaded.json"
_CHUNK = 4 * 1024 * 1024


def digest(fh: BinaryIO) -> tuple[int, bytes]:
    """(size, MD5) of the file from its current position; the file is left rewound there."""
    start = fh.tell()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    while chunk := fh.read(_CHUNK):
        md5.update(chunk)
        size += len(chunk)
    fh.seek(start)
    return size, md5.digest()


@dataclass
class Sent:
    """What one upload committed (filled by outputs._put when asked)."""

    size: int = 0
    content_md5: bytes = b""
    etag: str = ""


@dataclass(frozen=True)
class Stored:
    """One blob under a task's output folder, as listed now."""

    blob: str
    size: int
    content_md5: bytes | None
    etag: str


@dataclass
class Ledger:
    """The task's ledger of committed frame blobs (module docstring)."""

    job: str
    task: str
    spec_sha256: str
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the attempt's verdict when no retry fixes it: exit_code, exit_class, reason, why
    ended: dict[str, Any] | None = None

    def add(self, blob: str, sent: Sent) -> None:
        self.frames[blob] = {
            "bytes": sent.size,
            "content_md5": base64.b64encode(sent.content_md5).decode("ascii"),
            "etag": sent.etag.strip('"'),
        }

    def document(self) -> bytes:
        doc: dict[str, Any] = {"job": self.job, "task": self.task, "spec_sha256": self.spec_sha256}
        if self.ended is not None:
            doc["ended"] = self.ended
        return json.dumps({**doc, "frames": self.frames}, indent=1, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Ledger | None:
        try:
            doc = json.loads(data)
            frames = doc["frames"]
            if not isinstance(frames, dict):
                return None
            ended = doc.get("ended")
            return cls(
                str(doc["job"]),
                str(doc["task"]),
                str(doc["spec_sha256"]),
                frames,
                ended if isinstance(ended, dict) else None,
            )
        except (ValueError, KeyError, TypeError):
            return None

    def same_task(self, other: Ledger) -> bool:
        """Written by this job's same task running the same spec (Batch's retry of it)."""
        return (self.job, self.task, self.spec_sha256) == (
            other.job,
            other.task,
            other.spec_sha256,
        )

    def holds(self, s: Stored, job: str, task: str, spec_sha256: str) -> bool:
        """`s` is exactly the blob this job's task committed, running this spec."""
        if (self.job, self.task, self.spec_sha256) != (job, task, spec_sha256):
            return False
        entry = self.frames.get(s.blob)
        if not isinstance(entry, dict) or s.content_md5 is None or s.size <= 0:
            return False
        md5 = base64.b64encode(s.content_md5).decode("ascii")
        return (entry.get("bytes"), entry.get("content_md5"), entry.get("etag")) == (
            s.size,
            md5,
            s.etag.strip('"'),
        )


def list_stored(store: BlobStore, container: str, prefix: str) -> list[Stored]:
    """Every blob under `prefix` (one paged listing, each page under the store's retry
    policy); an absent container is an empty list (nothing was uploaded yet)."""
    from node_agent.errors import StorageError

    try:
        return [
            Stored(b.name, b.size, b.content_md5, b.etag)
            for b in store.list_blobs(container, prefix)
        ]
    except StorageError as e:
        if "ContainerNotFound" in str(e):
            return []
        raise


def read_ledger(store: BlobStore, container: str, blob: str, retry: RetryPolicy) -> Ledger | None:
    """The ledger an earlier run left, or None (none yet, or unreadable: render again)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from node_agent.errors import StorageError

    def get() -> bytes | None:
        try:
            return bytes(store.container(container).get_blob_client(blob).download_blob().readall())
        except ResourceNotFoundError:
            return None
        except AzureError as e:  # BlobStore's mapping: one line, redacted, transient or not
            raise store._err(e, f"reading '{container}/{blob}'") from None

    data = retry.call(get, retry_on=StorageError)
    return Ledger.parse(data) if data is not None else None


def write_ledger(store: BlobStore, container: str, blob: str, ledger: Ledger) -> None:
    """One Put Blob of the whole ledger (StorageError when it fails: the caller decides)."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContentSettings

    client = store.container(container).get_blob_client(blob)
    try:
        client.upload_blob(
            ledger.document(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
    except AzureError as e:
        raise store._err(e, f"writing '{container}/{blob}'") from None


class Reader(Protocol):
    """What a re-run reads before its renderer starts: the ledger, then the listing."""

    def ledger(self, blob: str) -> Ledger | None: ...

    def stored(self, prefix: str) -> list[Stored]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SdkReader:
    """Through the SDK's BlobStore: for credentials only the SDK can use (managed identity)."""

    store: BlobStore
    container: str
    retry: RetryPolicy

    def ledger(self, blob: str) -> Ledger | None:
        return read_ledger(self.store, self.container, blob, self.retry)

    def stored(self, prefix: str) -> list[Stored]:
        return list_stored(self.store, self.container, prefix)

    def close(self) -> None:
        pass  # the store lives on: the uploader uses it


@dataclass(frozen=True)
class RestReader:
    """Through the lean REST path (storage.rest, a read/list container SAS): the same GET
    and listing without importing the SDK, which then loads in the uploader's thread while
    the renderer starts (~0.1-0.2 s of every frame task's start, bench/bench_render.py).
    Every request runs under the client's storage.retry policy, as the SDK's do."""

    client: RestClient
    storage: Storage

    def close(self) -> None:
        self.client.close()

    def _refused(self, e: Exception) -> Exception:
        from node_agent.errors import StorageError
        from node_agent.storage.credentials import denied
        from node_agent.storage.rest import AccessDenied

        if isinstance(e, AccessDenied):  # name the credential, as BlobStore does
            return StorageError(denied(e.what, e.status, e.code, self.storage))
        return e

    def ledger(self, blob: str) -> Ledger | None:
        from node_agent.errors import StorageError
        from node_agent.storage.rest import NotFound

        what = f"reading '{self.client.container}/{blob}'"
        try:
            data = self.client.request(self.client.url(blob), None, what).data
        except NotFound:  # a 404 (never retried): no ledger, or no output container yet
            return None
        except StorageError as e:
            raise self._refused(e) from None
        return Ledger.parse(data)

    def stored(self, prefix: str) -> list[Stored]:
        from node_agent.errors import StorageError
        from node_agent.storage.rest import NotFound

        try:
            return [Stored(b.name, b.size, b.md5, b.etag) for b in self.client.list(prefix)]
        except NotFound:  # the container is gone: nothing stored
            return []
        except StorageError as e:
            raise self._refused(e) from None
