"""Uploading a task's frames, preview and logs (Batch File Conventions layout by default).

What is uploaded from the output folder, and what is refused (the task then fails, 17):
- A regular file is uploaded under a blob name built from its checked components
  (safepath.split_rel): a name with a '..', '.' or empty component, a drive, or a
  look-alike of '.' or '/' is refused, so no blob lands outside `<task>/$TaskOutput/`
  (or the custom prefix). On Linux a file name may hold a backslash: it is read as a
  separator, as on Windows and as a storage URL would read it (`a\\b.png` is blob
  `.../a/b.png`), so a name written on either system means the same blob; two files that
  would be the same blob are refused rather than one overwriting the other.
- A symbolic link whose target (every link resolved) is a regular file inside the output
  folder is uploaded under the link's name with the target's bytes. A link that leaves
  the folder, dangles, or names a folder is refused; a file outside is never read.
- Files are opened component by component from the real output folder with O_NOFOLLOW
  where the OS has it, so a link swapped in after the check is refused, not followed.
- A name starting with '.' (a hidden temporary) is skipped, once the name is safe.
"""

from __future__ import annotations

import io
import mimetypes
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from node_agent.conventions import task_log, task_output, task_preview
from node_agent.errors import StorageError, UploadError
from node_agent.logs import get_logger
from node_agent.output_record import Sent, digest
from node_agent.safepath import ContainmentError, check_component, is_within, rel_problem, split_rel
from node_agent.storage.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:
    from node_agent.storage import BlobStore

log = get_logger("outputs")

_TYPES = {".exr": "image/x-exr", ".tif": "image/tiff", ".tiff": "image/tiff", ".log": "text/plain"}
_FRAME = re.compile(r"(\d+)(?=\D*$)")
PREVIEW_NAME = "preview.png"
Opener = Callable[[], BinaryIO]


# The one storage retry policy (storage.retry): at least 4 tries, then more while the first
# failure is younger than policies.storage_retry_s, doubling delays up to 8 s.
Retry = RetryPolicy
DEFAULT_RETRY = DEFAULT_POLICY


@dataclass(frozen=True)
class Layout:
    """Where a task's files go: File Conventions (`<task>/$TaskOutput/...`) or a custom prefix.
    The task id is checked as one path component (it comes from AZ_BATCH_TASK_ID)."""

    container: str
    task_id: str
    prefix: str = ""

    def __post_init__(self) -> None:
        check_component(self.task_id, "AZ_BATCH_TASK_ID")
        if self.prefix.strip("/"):
            split_rel(self.prefix.strip("/"), "render.output.prefix")

    @property
    def output_root(self) -> str:
        return f"{self.prefix.strip('/')}/" if self.prefix else f"{self.task_id}/$TaskOutput/"

    def output(self, rel: str) -> str:
        """The blob name of output file `rel`; UploadError (17) if it would leave output_root."""
        try:
            if self.prefix:
                return self.output_root + "/".join(split_rel(rel, "output file"))
            return task_output(self.task_id, rel)
        except ContainmentError:
            raise UploadError(
                f"output file '{rel}' {rel_problem(rel)}: refused, its blob name could leave "
                f"{self.output_root}"
            ) from None

    def log(self, name: str) -> str:
        return task_log(self.task_id, name)

    def preview(self, name: str) -> str:
        if self.prefix:
            return f"{self.prefix.strip('/')}/$TaskPreview/" + "/".join(split_rel(name, "preview"))
        return task_preview(self.task_id, name)


def content_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def frame_number(name: str) -> int | None:
    """The last run of digits in a file name (`frame_0007.png` -> 7)."""
    m = _FRAME.search(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Candidate:
    """An output file to upload: `rel` its name under the output folder as on disk, `source`
    the components (under the real output folder) of the regular file whose bytes go up:
    itself, or for a link the file it resolves to."""

    rel: str
    source: tuple[str, ...]
    link: bool = False


def _refuse(rel: str, why: str) -> UploadError:
    return UploadError(f"output file '{rel}' {why}: refused")


def check_root(root: Path) -> None:
    """UploadError when the output folder itself is a link (a renderer swapped it for a link
    to /etc, say): nothing in it is read, let alone uploaded as the task's outputs."""
    if os.path.islink(root):
        raise UploadError(
            f"output folder '{root}' is a symbolic link (to {os.readlink(root)}): refused, "
            "nothing in it is uploaded (links are never followed)"
        )


def examine(root: Path, path: Path) -> Candidate | None:
    """What to do with `path` under the output folder `root`: a Candidate, None to skip it
    (gone, a folder, a hidden temporary), or UploadError naming it when it is refused."""
    check_root(root)
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return None
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # a blob name is UTF-8; the SDK would fail deep inside
        shown = rel.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise _refuse(shown, "is not valid UTF-8 (blob names are UTF-8)") from None
    problem = rel_problem(rel)
    if problem:
        raise UploadError(
            f"output file '{rel}' {problem}: refused, its blob name could leave the task's folder"
        )
    if path.name.startswith("."):
        return None
    real_root = os.path.realpath(root)
    # the components as they are on disk (on Linux a '\\' is part of a name): what is opened;
    # the blob name splits '\\' too (Layout.output), as on Windows
    parts = list(path.relative_to(root).parts)
    try:
        for i in range(1, len(parts)):  # the folders on the way, never followed
            if stat.S_ISLNK(os.lstat(os.path.join(real_root, *parts[:i])).st_mode):
                raise _refuse(rel, f"is inside '{'/'.join(parts[:i])}', a link to a folder")
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return Candidate(rel, tuple(parts))
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISLNK(st.st_mode):
        raise _refuse(rel, "is not a regular file")
    target = os.path.realpath(path)
    if not os.path.lexists(target):
        raise _refuse(rel, f"is a dangling link (to {os.readlink(path)})")
    if not is_within(real_root, target):
        raise _refuse(rel, f"is a link to {target}, outside the output folder")
    if not stat.S_ISREG(os.lstat(target).st_mode):
        raise _refuse(
            rel, "is a link to a folder or a special file: links to folders are not uploaded"
        )
    source = os.path.relpath(target, real_root).split(os.sep)
    return Candidate(rel, tuple(source), link=True)


def walk(root: Path) -> list[Path]:
    """Every entry under root (files, links, links to folders), never descending a link;
    UploadError when root itself is one."""
    check_root(root)
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                out.append(Path(dirpath) / name)
        out += [Path(dirpath) / name for name in filenames]
    return sorted(out)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def open_source(root: Path, source: tuple[str, ...]) -> BinaryIO:
    """Open root/source for reading, never through a link: component by component from the
    real root with O_NOFOLLOW where the OS allows (OSError if a link or non-file is met)."""
    if _NOFOLLOW and os.open in os.supports_dir_fd:
        # the root too is opened without following a link (from its real parent): a folder
        # swapped for a link after examine() is refused, not read
        pfd = os.open(os.path.realpath(root.parent), os.O_RDONLY | _DIRECTORY)
        try:
            fd = os.open(root.name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=pfd)
        finally:
            os.close(pfd)
        try:
            for part in source[:-1]:
                nxt = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            ffd = os.open(source[-1], os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)
    else:  # Windows: no dir_fd; examine() checked the path just before
        check_root(root)
        real_root = os.path.realpath(root)
        ffd = os.open(os.path.join(real_root, *source), os.O_RDONLY | getattr(os, "O_BINARY", 0))
    if not stat.S_ISREG(os.fstat(ffd).st_mode):
        os.close(ffd)
        raise OSError(f"{'/'.join(source)} is not a regular file")
    return os.fdopen(ffd, "rb")


def open_nofollow(path: Path) -> BinaryIO:
    """Open a file node_agent wrote (a log), refusing a link put in its place."""
    return open_source(path.parent, (path.name,))


def _put(
    store: BlobStore,
    fh: BinaryIO,
    container: str,
    blob: str,
    name: str,
    meta: dict[str, str],
    sent: Sent | None = None,
) -> str:
    """One upload. With `sent`, the blob carries the Content-MD5 of exactly these bytes
    (hashed from this handle, then rewound) and `sent` gets the size, MD5 and ETag
    committed: the re-run record (output_record)."""
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContentSettings

    settings = ContentSettings(content_type=content_type(name))
    if sent is not None:
        sent.size, sent.content_md5 = digest(fh)
        settings.content_md5 = bytearray(sent.content_md5)
    client = store.container(container).get_blob_client(blob)
    try:
        put = client.upload_blob(
            fh,
            overwrite=True,
            metadata=meta,
            max_concurrency=4,
            content_settings=settings,
        )
    except AzureError as e:
        # BlobStore's own mapping: one line, redacted, transient or not
        raise store._err(e, f"uploading '{name}' to '{container}/{blob}'") from None
    if sent is not None:
        sent.etag = str(put.get("etag") or "")
    return str(client.url).split("?")[0]


def upload_with_retry(
    store: BlobStore,
    source: Path | Opener,
    container: str,
    blob: str,
    metadata: dict[str, str],
    retry: Retry = DEFAULT_RETRY,
    *,
    name: str | None = None,
    sent: Sent | None = None,
) -> str:
    """Upload under `retry` (the one storage policy; the SDK's own retries are off, see
    storage.blob); UploadError (exit 17) when the retries are spent: the file stays on the
    node for the task's retry. `source` is a file node_agent wrote (opened without following
    a link) or an opener of the bytes to send. FileNotFoundError when the file is gone (the
    caller decides what that means)."""
    if isinstance(source, Path):
        path = source
        opener: Opener = lambda: open_nofollow(path)  # noqa: E731
        name = name or path.name
    else:
        opener = source
    label = name or blob.rsplit("/", 1)[-1]

    def attempt() -> str:
        try:
            with opener() as fh:
                return _put(store, fh, container, blob, label, metadata, sent)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise _refuse(
                label, f"cannot be read without following a link ({e.strerror or e})"
            ) from None

    def warn(err: BaseException, _tries: int, delay: float) -> None:
        log.warning("upload of %s failed (%s); retrying in %.1fs", label, err, delay)

    def spent(err: BaseException, tries: int, seconds: float) -> BaseException:
        return UploadError(f"{err} (after {tries} attempts over {seconds:.0f} s)")

    return retry.call(attempt, retry_on=StorageError, on_retry=warn, gave_up=spent)


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
            try:
                upload_with_retry(store, p, layout.container, layout.log(p.name), metadata, retry)
            except FileNotFoundError:
                continue
            done.append(p.name)
    return done


def thumbnail(frame: Path | Opener, size: int = 256) -> bytes | None:
    """A small PNG of a frame (Pillow); None when the format cannot be read (e.g. EXR)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with frame() if callable(frame) else open(frame, "rb") as fh, Image.open(fh) as im:
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGBA" if "A" in im.getbands() else "RGB").save(buf, "PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def upload_preview(
    store: BlobStore,
    layout: Layout,
    frame: Path | Opener,
    metadata: dict[str, str],
    retry: Retry = DEFAULT_RETRY,
    *,
    name: str = "",
) -> str | None:
    """A thumbnail of `frame` under $TaskPreview; a preview is never worth failing a task.
    Sent from memory: no file is written for it (the task folder is the renderer's too, and
    a link planted at a fixed name there would be written through as root)."""
    data = thumbnail(frame)
    if data is None:
        log.info("no preview: cannot make a thumbnail of %s", name or getattr(frame, "name", ""))
        return None
    try:
        return upload_with_retry(
            store,
            lambda: io.BytesIO(data),
            layout.container,
            layout.preview(PREVIEW_NAME),
            metadata,
            retry,
            name=PREVIEW_NAME,
        )
    except UploadError as e:
        log.warning("preview not uploaded: %s", e)
        return None
