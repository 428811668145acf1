"""Asset manifests: canonical form and push progress, with an in-memory store."""

from __future__ import annotations

import io
from pathlib import Path

from node_agent.sync.manifest import ManifestFile, PushSummary, canonical, push
from node_agent.sync.progress import Progress


def test_canonical_manifest_is_stable() -> None:
    a = [ManifestFile("b", 1, "00"), ManifestFile("a", 2, "11")]
    assert canonical(a) == canonical(list(reversed(a)))
    assert canonical(a).startswith(b'{"files":[{"path":"a"')


class _Store:
    """Just what push() needs of a BlobStore, in memory."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def ensure_container(self, container: str) -> None:
        pass

    def list_blobs(self, container: str, prefix: str) -> list[ManifestFile]:
        return [ManifestFile(n, len(b), "") for n, b in self.blobs.items() if n.startswith(prefix)]

    def upload_file(self, path: Path, container: str, blob: str, **kw: object) -> str:
        self.blobs[blob] = path.read_bytes()
        return blob


def test_push_progress_lines_then_summary(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(3):
        (ws / f"f{i}.bin").write_bytes(bytes([i]) * 2000)
    out = io.StringIO()  # not a terminal: plain lines (every 10 s; here every tick)
    progress = Progress(PushSummary(), out, interval=0)
    s = push(_Store(), "c", "p", ws, tmp_path / "cache.json", 2, progress)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert "push: hashing: 3 files, 3 hashed (6.0 kB), 0 reused from the hash cache" in lines
    assert any(x.startswith("push: uploading: 3/3 files, 6.0 kB of 6.0 kB, ") for x in lines)
    assert lines[-1] == (
        f"push: 3 files, 3 hashed, 0 reused from the hash cache, 3 uploaded (6.0 kB), "
        f"0 refused, {s.seconds:.1f}s"
    )
