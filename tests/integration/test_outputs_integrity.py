"""Outputs are complete or the task fails (issue 11, cases 2, 7 and 14).

Real `node-agent render` processes against a real Azurite, with a stand-in renderer
(tests/standins/hostile_outputs.py) that leaves hostile names and symbolic links in its
output folder. Storage is listed before and after: nothing outside the task's own
`$TaskOutput/`, `$TaskLog/` and `$TaskPreview/` may change, and summary.json lists exactly
the blobs the task put there.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from helpers import STANDINS, Task, azurite_sas, standin_task

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

sys.path.insert(0, str(STANDINS))
from hostile_outputs import TRAVERSALS  # noqa: E402

OTHER = "other-task"
ASSET = b"the job's input asset, byte for byte"
OTHER_FRAME = b"another task's frame, byte for byte"


def _task(tmp_path: Path, url: str, task: str, mode: str, arg: str = "", **kw: object) -> Task:
    """A render task whose renderer is the hostile stand-in, authenticating with a SAS (the
    signature does not cover the path, so a collapsed '..' would be honoured)."""
    t = standin_task(
        tmp_path,
        url,
        "hostile_outputs.py",
        mode,
        arg,
        task=task,
        frames=str(kw.pop("frames", "1")),
        **kw,
    )
    t.use_sas(azurite_sas())
    return t


def _snapshot(store: BlobStore) -> dict[tuple[str, str], str]:
    """Every blob of the account: (container, name) -> etag."""
    out = {}
    for c in store.service.list_containers():
        for b in store.list_blobs(c.name):
            out[(c.name, b.name)] = b.etag
    return out


def _seed(store: BlobStore, container: str) -> None:
    store.ensure_container("assets")
    store.container("assets").upload_blob("proj/spin.blend", ASSET, overwrite=True)
    store.ensure_container(container)
    other = f"{OTHER}/$TaskOutput/frame_0001.png"
    store.container(container).upload_blob(other, OTHER_FRAME, overwrite=True)
    for i in (2, 3):
        name = f"{OTHER}/$TaskOutput/frame_000{i}.png"
        store.container(container).upload_blob(name, OTHER_FRAME, overwrite=True)


def _own(task: str, container: str, key: tuple[str, str]) -> bool:
    c, name = key
    kinds = ("$TaskOutput/", "$TaskLog/", "$TaskPreview/")
    return c == container and any(name.startswith(f"{task}/{k}") for k in kinds)


def _changed_outside(
    before: dict[tuple[str, str], str], after: dict[tuple[str, str], str], t: Task, task: str
) -> list[tuple[str, str]]:
    return sorted(
        k for k, etag in after.items() if before.get(k) != etag and not _own(task, t.container, k)
    )


def _error_line(t: Task) -> str:
    lines = [ln for ln in t.stderr().splitlines() if "refused" in ln]
    assert lines, t.stderr()
    return lines[-1]


def test_backslash_traversal_names_are_refused_and_nothing_outside_changes(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    task = "t-traverse"
    t = _task(tmp_path, azurite.account_url, task, "traverse", OTHER)
    _seed(store, t.container)
    before = _snapshot(store)
    assert t.run("1") == 17, t.stderr()
    after = _snapshot(store)
    assert _changed_outside(before, after, t, task) == []
    assert store.read_blob("assets", "proj/spin.blend") == ASSET
    for i in (1, 2, 3):
        blob = f"{OTHER}/$TaskOutput/frame_000{i}.png"
        assert store.read_blob(t.container, blob) == OTHER_FRAME
    # the rest was uploaded; every hostile name is named on one line of the error
    own = sorted(n for c, n in after if c == t.container and n.startswith(f"{task}/$TaskOutput/"))
    assert own == [f"{task}/$TaskOutput/frame_0001.png"], own
    line = _error_line(t)
    for name in TRAVERSALS:
        assert name.format(other=OTHER) in line, (name, line)
    summary = json.loads(store.read_blob(t.container, f"{task}/$TaskLog/summary.json"))
    assert summary["exit_code"] == 17
    assert [o["blob"] for o in summary["outputs"]] == own


def test_symlinked_frames_inside_the_folder_are_uploaded_as_their_targets_bytes(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    task = "t-links"
    t = _task(tmp_path, azurite.account_url, task, "links", frames="1-3")
    assert t.run("1-3") == 0, t.stderr()
    prefix = f"{task}/$TaskOutput/"
    names = sorted(b.name for b in store.list_blobs(t.container, prefix))
    frames = [prefix + f"frame_000{i}.png" for i in (1, 2, 3)]
    assert names == frames + [prefix + "sub/hop.png", prefix + "sub/real3.png"]
    assert (
        store.read_blob(t.container, prefix + "frame_0002.png")
        == (t.out_dir / "frame_0001.png").read_bytes()
    )
    real3 = (t.out_dir / "sub" / "real3.png").read_bytes()
    assert store.read_blob(t.container, prefix + "frame_0003.png") == real3
    assert store.read_blob(t.container, prefix + "sub/hop.png") == real3
    summary = t.summary()
    assert sorted(o["blob"] for o in summary["outputs"]) == names
    assert {o["file"]: o["frame"] for o in summary["outputs"]}["frame_0002.png"] == 2


@pytest.mark.parametrize("shape", ["outside_file", "outside_dir_chain", "dangling"])
def test_a_link_leaving_the_folder_or_dangling_fails_the_task_and_is_never_read(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore, shape: str
) -> None:
    task = f"t-{shape.replace('_', '-')}"
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(b"never upload this: outside the output folder")
    if shape == "outside_dir_chain":  # a link inside that points at a link to outside
        (tmp_path / "elsewhere" / "hop.png").symlink_to(secret)
        target = str(tmp_path / "elsewhere" / "hop.png")
    else:
        target = str(secret)
    mode = "dangling" if shape == "dangling" else "outside"
    t = _task(tmp_path, azurite.account_url, task, mode, target, frames="1-2")
    assert t.run("1-2") == 17, t.stderr()
    prefix = f"{task}/$TaskOutput/"
    names = sorted(b.name for b in store.list_blobs(t.container, prefix))
    assert names == [prefix + "frame_0001.png"]
    line = _error_line(t)
    assert "frame_0002.png" in line and len(line.splitlines()) == 1
    assert re.search(r"outside the output folder|dangling", line), line
    for b in store.list_blobs(t.container):
        assert b"never upload this" not in store.read_blob(t.container, b.name), b.name
    summary = t.summary()
    assert [o["blob"] for o in summary["outputs"]] == names
    assert summary["exit_code"] == 17


@pytest.mark.slow
def test_one_failed_upload_summary_lists_exactly_what_storage_holds_and_exit_17(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    task = "t-partial"
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        # frames 1-3 written, 4 never: the upload failure of 1 must not hide behind 15
        "1",
        "2",
        "3",
        task=task,
        frames="1-4",
    )
    t.refuse_upload(store, "frame_0001.png")  # every upload of frame 1 is refused (412)
    assert t.run("1-4") == 17, t.stderr()
    prefix = f"{task}/$TaskOutput/"
    ours = []  # the blobs whose bytes are this task's files
    for b in store.list_blobs(t.container, prefix):
        local = t.out_dir / b.name[len(prefix) :]
        if store.read_blob(t.container, b.name) == local.read_bytes():
            ours.append(b.name)
    assert ours == [prefix + "frame_0002.png", prefix + "frame_0003.png"]
    summary = json.loads(store.read_blob(t.container, f"{task}/$TaskLog/summary.json"))
    assert sorted(o["blob"] for o in summary["outputs"]) == ours
    assert summary["exit_code"] == 17 and summary["exit_class"] == "upload"
    assert "frame_0001.png" in summary["reason"]
    err = t.stderr()
    assert re.search(r"2 output file\(s\) uploaded", err), err
    assert "frame_0001.png" in err.splitlines()[-1] or "frame_0001.png" in err


def test_backslashes_inside_linux_file_names_are_uploaded_not_skipped(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """'aov\\beauty_0001.png' is one file on Linux: its bytes go up as blob
    '<task>/$TaskOutput/aov/beauty_0001.png' (never skipped as 'gone', never another file
    read in its place), and a real folder 'renders/' beside 'renders\\frame_0002.png' does
    not change which bytes are read."""
    task = "t-winnames"
    t = _task(tmp_path, azurite.account_url, task, "windows_names", frames="1")
    assert t.run("1") == 0, t.stderr()
    prefix = f"{task}/$TaskOutput/"
    got = {
        b.name[len(prefix) :]: store.read_blob(t.container, b.name)
        for b in store.list_blobs(t.container, prefix)
    }
    assert got["aov/beauty_0001.png"] == b"beauty pass"
    assert got["renders/frame_0002.png"] == b"frame two"
    assert got["renders/other.png"] == b"another file"
    assert sorted(o["blob"] for o in t.summary()["outputs"]) == sorted(prefix + n for n in got)


def test_an_output_name_that_is_not_utf8_fails_the_task_with_17_not_a_bug(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    task = "t-latin1"
    t = _task(tmp_path, azurite.account_url, task, "latin1", frames="1")
    assert t.run("1") == 17, t.stderr()
    assert "is not valid UTF-8" in t.stderr() and "internal error" not in t.stderr()
    prefix = f"{task}/$TaskOutput/"
    assert [b.name for b in store.list_blobs(t.container, prefix)] == [prefix + "frame_0001.png"]
    logs = [b.name for b in store.list_blobs(t.container, f"{task}/$TaskLog/")]
    assert f"{task}/$TaskLog/summary.json" in logs or any("summary" in n for n in logs)
