"""Uploading a task's frames, preview and logs (Batch File Conventions layout by default)."""

from __future__ import annotations

import io
import mimetypes
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from node_agent.conventions import task_log, task_output, task_preview
from node_agent.errors import StorageError, UploadError
from node_agent.logs import get_logger

if TYPE_CHECKING:
    from node_agent.storage import BlobStore

log = get_logger("outputs")

_TYPES = {".exr": "image/x-exr", ".tif": "image/tiff", ".tiff": "image/tiff", ".log": "text/plain"}
_FRAME = re.compile(r"(\d+)(?=\D*$)")
PREVIEW_NAME = "preview.png"


@dataclass(frozen=True)
class Retry:
    """At least `attempts` tries, and more while the first failure is younger than
    `budget_s` (the spec's policies.storage_retry_s), with doubling delays up to 8 s."""

    attempts: int = 4
    first_delay_s: float = 1.0
    budget_s: float = 0.0


DEFAULT_RETRY = Retry()


@dataclass(frozen=True)
class Layout:
    """Where a task's files go: File Conventions (`<task>/$TaskOutput/...`) or a custom prefix."""

    container: str
    task_id: str
    prefix: str = ""

    def output(self, rel: str) -> str:
        return f"{self.prefix.strip('/')}/{rel}" if self.prefix else task_output(self.task_id, rel)

    def log(self, name: str) -> str:
        return task_log(self.task_id, name)

    def preview(self, name: str) -> str:
        if self.prefix:
            return f"{self.prefix.strip('/')}/$TaskPreview/{name}"
        return task_preview(self.task_id, name)


def content_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or ("application/octet-stream")
    )


def frame_number(name: str) -> int | None:
    """The last run of digits in a file name (`frame_0007.png` -> 7)."""
    m = _FRAME.search(name)
    return int(m.group(1)) if m else None


def inside(path: Path, root: Path) -> bool:
    """A regular file under root, not a symlink, that does not resolve out of root."""
    try:
        return (
            not path.is_symlink()
            and path.is_file()
            and path.resolve().is_relative_to(root.resolve())
        )
    except OSError:
        return False


def files_under(root: Path) -> list[Path]:
    """Regular files under root; symlinks are never followed, in or out of it."""
    out: list[Path] = []
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            log.warning("not uploading symlink %s", p)
            continue
        if inside(p, root):
            out.append(p)
    return out


def upload_with_retry(
    store: BlobStore,
    path: Path,
    container: str,
    blob: str,
    metadata: dict[str, str],
    retry: Retry = DEFAULT_RETRY,
) -> str:
    """Upload with backoff (1 s, 2 s, 4 s, 8 s...); UploadError (exit 17) when the retries
    are spent: the file stays on the node for the task's retry."""
    delay = retry.first_delay_s
    first_failure: float | None = None
    attempt = 0
    while True:
        try:
            return store.upload_file(
                path, container, blob, content_type=content_type(path), metadata=metadata
            )
        except StorageError as e:
            attempt += 1
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            budget = retry.budget_s if e.transient else 0.0  # a refusal: `attempts` tries only
            if attempt >= retry.attempts and now - first_failure >= budget:
                raise UploadError(
                    f"{e} (after {attempt} attempts over {now - first_failure:.0f} s)"
                ) from None
            log.warning("upload of %s failed (%s); retrying in %.1fs", path.name, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def upload_logs(
    store: BlobStore,
    layout: Layout,
    logs: list[Path],
    metadata: dict[str, str],
    retry: Retry = DEFAULT_RETRY,
) -> list[str]:
    done = []
    for p in logs:
        if p.is_file():
            upload_with_retry(store, p, layout.container, layout.log(p.name), metadata, retry)
            done.append(p.name)
    return done


def thumbnail(path: Path, size: int = 256) -> bytes | None:
    """A small PNG of a frame (Pillow); None when the format cannot be read (e.g. EXR)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(path) as im:
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGBA" if "A" in im.getbands() else "RGB").save(buf, "PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def upload_preview(
    store: BlobStore,
    layout: Layout,
    frame: Path,
    work_dir: Path,
    metadata: dict[str, str],
    retry: Retry = DEFAULT_RETRY,
) -> str | None:
    """A thumbnail of `frame` under $TaskPreview; a preview is never worth failing a task."""
    data = thumbnail(frame)
    if data is None:
        log.info("no preview: cannot make a thumbnail of %s", frame.name)
        return None
    tmp = work_dir / PREVIEW_NAME
    tmp.write_bytes(data)
    try:
        return upload_with_retry(
            store, tmp, layout.container, layout.preview(PREVIEW_NAME), metadata, retry
        )
    except UploadError as e:
        log.warning("preview not uploaded: %s", e)
        return None
