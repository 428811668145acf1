"""A job's blobs as the render task leaves them (Batch File Conventions, conventions.py):
`<task>/$TaskOutput/<file>` frames (or under render.output.prefix), `<task>/$TaskLog/` logs
and summary.json, `<task>/$TaskPreview/preview.png`. Read through node_agent.storage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from node_agent.conventions import job_container
from node_agent.errors import StorageError
from node_agent.outputs import frame_number
from node_agent.redact import Redactor
from node_agent.spec import JobSpec, Storage, StorageAuth
from node_agent.storage import BlobStore
from node_agent.storage.blob import BlobEntry
from node_agent.storage.retry import RetryPolicy, policy

OUTPUT = "$TaskOutput"
LOG = "$TaskLog"
PREVIEW = "$TaskPreview"


@dataclass(frozen=True)
class Frame:
    """One output file of the job: the flat name it gets in a download, the blob it is."""

    name: str  # file name (the output pattern's), as the flat download folder names it
    task: str
    blob: BlobEntry

    @property
    def number(self) -> int | None:
        return frame_number(self.name)


class JobBlobs:
    """The job's container (render.output.container, else File Conventions' job-<id>)."""

    def __init__(
        self,
        storage: Storage,
        container: str,
        prefix: str = "",
        retry: RetryPolicy | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.account_url = storage.account_url
        self.container = container
        self.prefix = prefix.strip("/")
        self.store = BlobStore(storage, redactor or Redactor(), retry=retry or policy())
        self._summaries: dict[str, tuple[str, dict[str, Any]]] = {}  # blob -> (etag, doc)
        self.name_counts: dict[str, int] = {}

    @classmethod
    def of_spec(cls, spec: JobSpec, job_id: str, redactor: Redactor | None = None) -> JobBlobs:
        out = spec.render.output
        container = out.container or job_container(job_id)
        return cls(spec.storage, container, out.prefix, policy(spec.policies), redactor)

    @classmethod
    def of_emulator(cls, account_url: str, job_id: str) -> JobBlobs:
        """A job on Azurite whose spec is gone (local pool): File Conventions' container."""
        storage = Storage(account_url=account_url, auth=StorageAuth(kind="emulator"))
        return cls(storage, job_container(job_id), "", policy(10.0))

    def url(self, blob: str) -> str:
        return f"{self.account_url}/{self.container}/{blob}"

    def listing(self) -> list[BlobEntry]:
        """Every blob of the job's container (a missing container: none yet)."""
        try:
            return list(self.store.list_blobs(self.container))
        except StorageError as e:
            if "not found" in str(e) or "ContainerNotFound" in str(e):
                return []
            raise

    def frames(self, listing: list[BlobEntry] | None = None) -> dict[str, Frame]:
        """Output files by flat name; when two tasks uploaded the same name (a requeued or
        re-run task), the newest blob wins."""
        found: dict[str, Frame] = {}
        self.name_counts = {}  # flat name -> blobs having it (>1: a collision)
        for b in self.listing() if listing is None else listing:
            parts = b.name.split("/")
            if self.prefix:
                if not b.name.startswith(self.prefix + "/") or f"/{PREVIEW}/" in b.name:
                    continue
                task, name = "", parts[-1]
            elif len(parts) >= 3 and parts[1] == OUTPUT:
                task, name = parts[0], parts[-1]
            else:
                continue
            self.name_counts[name] = self.name_counts.get(name, 0) + 1
            old = found.get(name)
            if old is None or b.last_modified > old.blob.last_modified:
                found[name] = Frame(name, task, b)
        return found

    def previews(self, listing: list[BlobEntry]) -> dict[str, BlobEntry]:
        """Each task's $TaskPreview thumbnail."""
        out = {}
        for b in listing:
            parts = b.name.split("/")
            if len(parts) >= 3 and parts[1] == PREVIEW:
                out[parts[0]] = b
        return out

    def logs(self, listing: list[BlobEntry]) -> list[BlobEntry]:
        return [b for b in listing if f"/{LOG}/" in b.name]

    def summaries(self, listing: list[BlobEntry]) -> dict[str, dict[str, Any]]:
        """Each task's $TaskLog/summary.json (the render task's verdict, times, uploads)."""
        docs: dict[str, dict[str, Any]] = {}
        for b in listing:
            parts = b.name.split("/")
            if len(parts) == 3 and parts[1] == LOG and parts[2] == "summary.json":
                cached = self._summaries.get(b.name)
                if cached is not None and cached[0] == b.etag:  # a watch reads each once
                    docs[parts[0]] = cached[1]
                    continue
                try:
                    docs[parts[0]] = dict(json.loads(self.read(b.name)))
                except (StorageError, ValueError):
                    continue
                self._summaries[b.name] = (b.etag, docs[parts[0]])
        return docs

    def read(self, blob: str) -> bytes:
        return self.store.read_blob(self.container, blob)

    def log_tail(self, task: str, name: str = "renderer.log", limit: int = 64_000) -> str:
        """The end of one of a task's logs in $TaskLog ('' when there is none): only its
        last `limit` bytes are fetched (a ranged GET), whatever the log's size."""
        blob = f"{task}/{LOG}/{name}"
        try:
            client = self.store.container(self.container).get_blob_client(blob)
            size = int(client.get_blob_properties().size)
            start = max(0, size - limit)
            data = bytes(client.download_blob(offset=start, length=size - start).readall())
        except Exception:  # noqa: BLE001 (a tail is best effort: no log, no tail)
            return ""
        if start and b"\n" in data:
            data = data.split(b"\n", 1)[1]
        return data.decode("utf-8", errors="replace")
