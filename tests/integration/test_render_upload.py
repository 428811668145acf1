"""Outputs: progressive upload while the renderer runs, metadata, preview, symlinks, failures."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest
from helpers import make_spec_doc, make_task, standin, standin_task
from standins._common import png

from node_agent.azurite import AzuriteServer
from node_agent.errors import ExitCode, StorageError, UploadError
from node_agent.outputs import Layout, Retry
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync.progress import format_bytes
from node_agent.watcher import ProgressiveUploader


def _wait_blob(store: BlobStore, container: str, name: str, within: float = 180.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if any(b.name == name for b in store.list_blobs(container, name)):
                return True
        except StorageError:  # the task has not created the container yet
            pass
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_frames_reach_azurite_while_the_renderer_still_runs(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    marker = tmp_path / "seen-frame-1"
    t = make_task(
        tmp_path,
        azurite.account_url,
        renderer="maya",
        executable=standin("fake_maya_render.py"),
        scene="s.mb",
        frames="1-2",
        env={"STANDIN_MODE": "wait", "STANDIN_MARKER": str(marker)},
    )
    proc = t.start("1-2")
    try:
        first = "task-1/$TaskOutput/frame_0001.png"
        assert _wait_blob(store, t.container, first), t.stderr()
        # the stand-in cannot have finished: it waits for the marker before frame 2
        assert proc.poll() is None
        assert not (t.out_dir / "frame_0002.png").exists()
        props = store.container(t.container).get_blob_client(first).get_blob_properties()
        assert props.content_settings.content_type == "image/png"
        assert props.metadata == {
            "job": "job-a",
            "task": "task-1",
            "node": "tvmps_test",
            "frame": "1",
        }
        marker.touch()
        assert proc.wait(180) == 0, t.stderr()
    finally:
        marker.touch()
        if proc.poll() is None:
            proc.kill()
    names = {b.name for b in store.list_blobs(t.container, "task-1/")}
    assert "task-1/$TaskOutput/frame_0002.png" in names
    preview = store.read_blob(t.container, "task-1/$TaskPreview/preview.png")
    assert preview.startswith(b"\x89PNG")
    summary = json.loads(store.read_blob(t.container, "task-1/$TaskLog/summary.json"))
    assert [o["file"] for o in summary["outputs"]] == ["frame_0001.png", "frame_0002.png"]
    assert all("sig=" not in o["url"] for o in summary["outputs"])
    assert summary["preview"].endswith("/task-1/%24TaskPreview/preview.png")


def test_custom_container_and_prefix(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        "{frame}",
        frames="4",
        output={"container": "renders", "prefix": "shots/s1/"},
    )
    assert t.run("4") == 0, t.stderr()
    names = {b.name for b in store.list_blobs("renders")}
    assert "shots/s1/frame_0004.png" in names and "shots/s1/$TaskPreview/preview.png" in names
    assert "task-1/$TaskLog/summary.json" in names


def _outside_links(out: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.png").write_bytes(png())
    os.symlink(secret, out / "link.txt")
    os.symlink(tmp_path / "elsewhere", out / "linkdir")
    os.symlink(out / "frame_0001.png", out / "inner_link.png")


def test_uploads_never_follow_symlinks_out(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A link inside the folder goes up with its target's bytes; links out are refused (the
    task fails naming them) and what they point at is never read."""
    out = tmp_path / "out"
    out.mkdir()
    up = ProgressiveUploader(store, Layout("symlinks", "t1"), out, {"job": "j"})
    store.ensure_container("symlinks")
    up.start()
    (out / "frame_0001.png").write_bytes(png())
    _outside_links(out, tmp_path)
    with pytest.raises(UploadError) as e:
        up.finish()
    msg = str(e.value)
    assert "'link.txt' is a link to" in msg and "'linkdir' is a link to" in msg
    assert len(msg.splitlines()) == 1
    done = up.done()
    assert [u.rel for u in done] == ["frame_0001.png", "inner_link.png"]
    names = [b.name for b in store.list_blobs("symlinks")]
    assert names == ["t1/$TaskOutput/frame_0001.png", "t1/$TaskOutput/inner_link.png"]
    assert store.read_blob("symlinks", names[1]) == png()


def _dead_store() -> BlobStore:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/devstoreaccount1"
    # the SDK's own retries are off in BlobStore: the retries under test are the policy's
    return BlobStore(spec_from_data(make_spec_doc(url)).storage, Redactor())


@pytest.mark.slow
def test_upload_failure_is_retried_then_exit_17_and_files_stay(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_0001.png").write_bytes(png())
    up = ProgressiveUploader(
        _dead_store(), Layout("c1", "t1"), out, {}, retry=Retry(attempts=2, first_delay_s=0.1)
    )
    up.start()
    with pytest.raises(UploadError) as e:
        up.finish()
    assert e.value.exit_code == ExitCode.UPLOAD == 17
    msg = str(e.value)
    assert "frame_0001.png" in msg and "stay in" in msg and "after 2 attempts" in msg
    assert len(msg.splitlines()) == 1
    assert (out / "frame_0001.png").is_file()


@pytest.mark.slow
def test_render_task_exits_17_when_a_frame_cannot_be_uploaded(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        "1",
        "2",
        task="t-lease",
        frames="1-2",
    )
    t.refuse_upload(store, "frame_0001.png")  # a leased blob: every attempt fails (412)
    assert t.run("1-2") == 17, t.stderr()
    assert "frame_0001.png" in t.stderr() and "stay in" in t.stderr()
    assert (t.out_dir / "frame_0001.png").is_file()  # kept on the node for the retry
    names = {b.name for b in store.list_blobs(t.container, "t-lease/")}
    assert "t-lease/$TaskOutput/frame_0002.png" in names
    assert "t-lease/$TaskLog/summary.json" in names


def test_each_upload_logs_a_line_and_many_uploads_a_summary(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    frames = [str(f) for f in range(1, 13)]
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        *frames,
        frames="1-12",
    )
    assert t.run("1-12") == 0, t.stderr()
    err = t.stderr()
    sizes = {p.name: p.stat().st_size for p in t.out_dir.iterdir()}
    assert len(sizes) == 12 and len(set(sizes.values())) == 1
    size = format_bytes(next(iter(sizes.values())))
    for name in sizes:  # one INFO line per output: name, size, seconds
        blob = re.escape(f"{t.container}/task-1/$TaskOutput/{name}")
        want = rf" INFO .* uploaded {re.escape(name)} \({size}\) in \d+\.\d\ds -> {blob}$"
        assert len(re.findall(want, err, re.M)) == 1, err
    # a summary line every 10 uploads and the total at the end: files and bytes so far
    so_far = re.findall(
        r" INFO .* uploads so far: (\d+) file\(s\), (.+?), \d+\.\ds uploading \(", err
    )
    total = sum(sizes.values())
    assert so_far == [("10", format_bytes(total * 10 // 12)), ("12", format_bytes(total))], err
