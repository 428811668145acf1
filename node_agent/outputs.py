"""Uploading a task's frames and logs under the Batch File Conventions layout."""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path

from node_agent.conventions import task_log, task_output
from node_agent.errors import UploadError, StorageError
from node_agent.logs import get_logger
from node_agent.storage import BlobStore

log = get_logger("outputs")


def files_under(root: Path) -> list[Path]:
    """Regular files under root; symlinks are never followed out of it."""
    out: list[Path] = []
    if not root.is_dir():
        return out
    base = root.resolve()
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            log.warning("not uploading symlink %s", p)
            continue
        if p.is_file() and p.resolve().is_relative_to(base):
            out.append(p)
    return out


def upload_with_retry(
    store: BlobStore, path: Path, container: str, blob: str, metadata: dict[str, str],
    attempts: int = 4,
) -> str:
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    delay = 1.0
    for i in range(attempts):
        try:
            return store.upload_file(path, container, blob, content_type=ctype, metadata=metadata)
        except StorageError as e:
            if i == attempts - 1:
                raise UploadError(str(e)) from None
            log.warning("upload of %s failed (%s); retrying in %.0fs", path.name, e, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def upload_outputs(
    store: BlobStore, container: str, task_id: str, output_dir: Path, metadata: dict[str, str],
    prefix: str = "",
) -> list[dict[str, object]]:
    uploaded: list[dict[str, object]] = []
    for p in files_under(output_dir):
        rel = p.relative_to(output_dir).as_posix()
        blob = f"{prefix.rstrip('/')}/{rel}" if prefix else task_output(task_id, rel)
        url = upload_with_retry(store, p, container, blob, metadata)
        uploaded.append({"file": rel, "bytes": p.stat().st_size, "blob": blob, "url": url})
    return uploaded


def upload_logs(
    store: BlobStore, container: str, task_id: str, logs: list[Path], metadata: dict[str, str]
) -> list[str]:
    done = []
    for p in logs:
        if p.is_file():
            upload_with_retry(store, p, container, task_log(task_id, p.name), metadata)
            done.append(p.name)
    return done
