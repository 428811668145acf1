"""Issue 11, cases 1 and 10: a sync never writes, overwrites or removes through a symbolic
link planted in its destination (a `node-agent sync` DEST or a job's view), and
`node-agent sync` is explicit about deletion. Real Azurite, real `node-agent` processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import (
    digests,
    make_spec,
    node_of,
    run_agent,
    run_job_prep,
    seed,
    tree,
    write_spec,
)

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def _sync(
    azurite: AzuriteServer, source: str, dest: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    args = ["sync", source, str(dest), *extra]
    args += ["--account-url", azurite.account_url, "--reserve-mb", "0"]
    return run_agent(args, timeout=300)


def _outside(base: Path) -> Path:
    """A folder that belongs to someone else: files and a sub-folder the sync must not touch."""
    out = base / "outside"
    (out / "x").mkdir(parents=True)
    (out / "a.txt").write_bytes(b"outside a")
    (out / "keep.txt").write_bytes(b"outside keep")
    (out / "x" / "inner.txt").write_bytes(b"outside inner")
    return out


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under root, links as links (never followed): path -> content or target."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def _no_links(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_symlink()]


# --- a folder link in a `node-agent sync` DEST ------------------------------------------
def test_sync_dest_folder_link_to_outside_is_replaced_not_followed(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """DEST/proj -> outside: the source's proj/a.txt and proj/x (a file where outside has a
    folder) must not overwrite outside/a.txt nor rmtree outside/x. The link is replaced by
    a real folder (DEST is the sync's to write), a warning names it, exit 0."""
    files = {"fl/proj/a.txt": b"source a", "fl/proj/x": b"source x", "fl/top.txt": b"top"}
    seed(store, "cs-link", files)
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "proj").symlink_to(outside, target_is_directory=True)
    r = _sync(azurite, "cs-link/fl/", dest)
    assert r.returncode == 0, r.stderr
    assert _snapshot(outside) == before
    assert not (dest / "proj").is_symlink() and (dest / "proj").is_dir()
    assert tree(dest) == digests(files, "fl/")
    assert "symbolic link" in r.stderr and str(dest / "proj") in r.stderr, r.stderr


def test_sync_dest_file_link_at_the_final_component(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """DEST/a.txt -> outside/a.txt and DEST/x -> outside/x (a folder): the links themselves
    are replaced by the source's files, their targets untouched, a warning names each."""
    files = {"ff/a.txt": b"source a", "ff/x": b"source x"}
    seed(store, "cs-final", files)
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").symlink_to(outside / "a.txt")
    (dest / "x").symlink_to(outside / "x", target_is_directory=True)
    r = _sync(azurite, "cs-final/ff/", dest)
    assert r.returncode == 0, r.stderr
    assert _snapshot(outside) == before
    assert _no_links(dest) == []
    assert tree(dest) == digests(files, "ff/")
    for name in ("a.txt", "x"):
        assert f"{dest / name}" in r.stderr and "symbolic link" in r.stderr, r.stderr


def test_resync_through_a_link_planted_over_a_synced_folder(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """A synced folder DEST/shots is swapped for a link to outside; the source then drops a
    file and turns another path into a file where outside has a folder. The
    re-sync removes nothing outside (no rmtree of outside/x, no overwrite of outside/a.txt),
    and DEST ends as exactly the source."""
    c = store.container
    seed(store, "cs-resync", {"rs/shots/a.txt": b"v1", "rs/shots/old.txt": b"old"})
    dest = tmp_path / "dest"
    r = _sync(azurite, "cs-resync/rs/", dest)
    assert r.returncode == 0, r.stderr
    c("cs-resync").delete_blob("rs/shots/old.txt")
    seed(store, "cs-resync", {"rs/shots/a.txt": b"v2", "rs/shots/x": b"now a file"})
    outside = _outside(tmp_path)
    (outside / "old.txt").write_bytes(b"outside old")
    before = _snapshot(outside)
    os.rename(dest / "shots", tmp_path / "moved-away")
    (dest / "shots").symlink_to(outside, target_is_directory=True)
    r = _sync(azurite, "cs-resync/rs/", dest)
    assert r.returncode == 0, r.stderr
    assert _snapshot(outside) == before
    assert tree(dest) == {
        "shots/a.txt": hashlib.sha256(b"v2").hexdigest(),
        "shots/x": hashlib.sha256(b"now a file").hexdigest(),
    }
    assert _no_links(dest) == []


def _link_to_parent(dest: Path, base: Path) -> Path:
    (dest / "up").symlink_to("..", target_is_directory=True)  # DEST/up -> DEST/..
    return dest / "up"


def _chain(dest: Path, base: Path) -> Path:
    (base / "hop").symlink_to(base / "outside", target_is_directory=True)
    (dest / "up").symlink_to(base / "hop", target_is_directory=True)  # link -> link -> outside
    return dest / "up"


def _dangling(dest: Path, base: Path) -> Path:
    (dest / "up").symlink_to(base / "nowhere" / "deep", target_is_directory=True)
    return dest / "up"


def _depth3(dest: Path, base: Path) -> Path:
    (dest / "d1" / "d2").mkdir(parents=True)
    (dest / "d1" / "d2" / "up").symlink_to(base / "outside", target_is_directory=True)
    return dest / "d1" / "d2" / "up"


def _relative_to_outside(dest: Path, base: Path) -> Path:
    (dest / "up").symlink_to("../outside", target_is_directory=True)
    return dest / "up"


SHAPES: dict[str, Callable[[Path, Path], Path]] = {
    "link-to-parent-of-root": _link_to_parent,
    "chain-of-links": _chain,
    "dangling": _dangling,
    "depth-3": _depth3,
    "relative-link-outside": _relative_to_outside,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_other_link_shapes_in_a_sync_dest(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, shape: str
) -> None:
    """Whatever the link points at (the root's parent, another link, nothing, a folder
    outside) and however deep it sits, nothing is written or removed outside DEST."""
    base = tmp_path
    dest = base / "dest"
    dest.mkdir()
    _outside(base)
    link = SHAPES[shape](dest, base)
    rel = link.relative_to(dest).as_posix()
    files = {f"sh/{rel}/a.txt": b"source a", f"sh/{rel}/x": b"source x", "sh/keep.txt": b"k"}
    seed(store, f"cs-shape-{shape}", files)
    before_base = {
        k: v
        for k, v in _snapshot(base).items()
        if not k.startswith("dest/") and k != "dest" and not k.startswith(".node-agent-cache")
    }
    r = _sync(azurite, f"cs-shape-{shape}/sh/", dest)
    assert r.returncode == 0, r.stderr
    after_base = {
        k: v
        for k, v in _snapshot(base).items()
        if not k.startswith("dest/") and k != "dest" and not k.startswith(".node-agent-cache")
    }
    assert after_base == before_base
    assert not link.is_symlink() and link.is_dir()
    assert tree(dest) == digests(files, "sh/")
    assert str(link) in r.stderr, r.stderr


# --- the same in a job's view, on a job-prep re-run ----------------------------------------
@pytest.fixture
def unmount_after(tmp_path: Path) -> Iterator[None]:
    """Job prep may mount an overlay for the job's assets: unmount what is under tmp_path."""
    yield
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    for p in reversed(points):
        if p.startswith(f"{tmp_path}/"):
            subprocess.run(["umount", "-l", p], check=False, capture_output=True)


def _engine_view(root: Path, job: str) -> Path:
    """The folder the sync engine builds for a job: jobs/<job>/assets, or with view
    isolation the hard-link view under it (what tasks see in assets is then a layer or a
    copy of it, the isolation's to guard)."""
    node = node_of(root, job)
    return Path(getattr(node, "job_view_dir", node.job_assets_dir)())


def test_job_prep_rerun_with_links_planted_in_the_view(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, unmount_after: None
) -> None:
    """The job's view: tex -> outside and a file link at a blob path: the re-run (source
    changed, so the view is rebuilt) writes nothing outside, replaces the links with real
    entries, warns naming them, exits 0 with the exact view."""
    files = {"jv/scene.blend": b"scene", "jv/tex/a.txt": b"tex v1", "jv/tex/x": b"x"}
    seed(store, "cs-jobview", files)
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "cs-jobview", "jv/"))
    root = tmp_path / "node"
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stderr
    view = _engine_view(root, "job-a")
    outside = _outside(tmp_path)
    (tmp_path / "outside-scene.blend").write_bytes(b"someone else's scene")
    before = _snapshot(tmp_path / "outside"), (tmp_path / "outside-scene.blend").read_bytes()
    os.rename(view / "tex", tmp_path / "moved-away")
    (view / "tex").symlink_to(outside, target_is_directory=True)
    (view / "scene.blend").unlink()
    (view / "scene.blend").symlink_to(tmp_path / "outside-scene.blend")
    files["jv/tex/a.txt"] = b"tex v2"
    seed(store, "cs-jobview", files)
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stderr
    assert (_snapshot(outside), (tmp_path / "outside-scene.blend").read_bytes()) == before
    assert _no_links(view) == []
    assert tree(view) == digests(files, "jv/")
    assert "symbolic link" in r.stderr and str(view / "tex") in r.stderr, r.stderr


def test_job_prep_rerun_when_the_view_root_is_a_link(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, unmount_after: None
) -> None:
    """The job's view root itself -> outside: the re-run must not write the view into outside
    nor prune outside's files (keep.txt, x/inner.txt are not in the source)."""
    files = {"jr/scene.blend": b"scene", "jr/a.txt": b"a"}
    seed(store, "cs-jobroot", files)
    spec = write_spec(tmp_path / "job.json", make_spec(azurite.account_url, "cs-jobroot", "jr/"))
    root = tmp_path / "node"
    assert run_job_prep(root, "job-a", spec).returncode == 0
    view = _engine_view(root, "job-a")
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    os.rename(view, tmp_path / "moved-away")
    view.symlink_to(outside, target_is_directory=True)
    seed(store, "cs-jobroot", {"jr/a.txt": b"a2"})
    r = run_job_prep(root, "job-a", spec)
    assert r.returncode == 0, r.stderr
    assert _snapshot(outside) == before
    assert not view.is_symlink()
    assert tree(view) == digests({**files, "jr/a.txt": b"a2"}, "jr/")


# --- `node-agent sync` and deletion ------------------------------------------------------
def test_sync_keeps_local_extras_by_default_and_counts_them(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files = {"kp/a.txt": b"a", "kp/d/b.txt": b"b"}
    seed(store, "cs-keep", files)
    dest = tmp_path / "dest"
    (dest / "d").mkdir(parents=True)
    (dest / "mine.txt").write_bytes(b"my notes")
    (dest / "d" / "mine2.txt").write_bytes(b"more notes")
    (dest / "d" / "b.txt").write_bytes(b"local b, replaced by the source's")
    r = _sync(azurite, "cs-keep/kp/", dest)
    assert r.returncode == 0, r.stderr
    assert tree(dest) == {
        **digests(files, "kp/"),
        "mine.txt": hashlib.sha256(b"my notes").hexdigest(),
        "d/mine2.txt": hashlib.sha256(b"more notes").hexdigest(),
    }
    assert "kept 2 local file(s) not in the source" in r.stdout, r.stdout
    r = _sync(azurite, "cs-keep/kp/", dest)  # a no-op re-run says the same
    assert r.returncode == 0 and "kept 2 local file(s) not in the source" in r.stdout


def test_sync_delete_mirrors_and_counts(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    files = {"dl/a.txt": b"a", "dl/d/b.txt": b"b"}
    seed(store, "cs-delete", files)
    dest = tmp_path / "dest"
    (dest / "d" / "e").mkdir(parents=True)
    (dest / "mine.txt").write_bytes(b"my notes")
    (dest / "d" / "e" / "mine2.txt").write_bytes(b"more notes")
    outside = _outside(tmp_path)
    before = _snapshot(outside)
    (dest / "lnk").symlink_to(outside, target_is_directory=True)  # not a source path
    r = _sync(azurite, "cs-delete/dl/", dest, "--delete")
    assert r.returncode == 0, r.stderr
    assert tree(dest) == digests(files, "dl/")
    assert not (dest / "d" / "e").exists() and not os.path.lexists(dest / "lnk")
    assert _snapshot(outside) == before  # the link was removed as a link
    assert "removed 3 local file(s) not in the source" in r.stdout, r.stdout
    help_text = run_agent(["sync", "--help"]).stdout
    assert "--delete" in help_text and "mirror" in help_text.lower()


@pytest.mark.parametrize("where", ["inside", "equal", "around"])
def test_sync_refuses_a_cache_overlapping_dest(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, where: str
) -> None:
    seed(store, "cs-cache", {"cc/a.txt": b"a"})
    dest = tmp_path / "dest"
    cache = {"inside": dest / "sub" / "cache", "equal": dest, "around": tmp_path}[where]
    if where == "around":
        dest = tmp_path / "deeper" / "dest"
    r = _sync(azurite, "cs-cache/cc/", dest, "--cache", str(cache))
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("node-agent:")]
    assert len(errors) == 1 and "--cache" in errors[0], r.stderr
    assert not dest.exists()
    if where == "around":
        assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_look_alike_blob_names_are_refused_by_the_sync(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """One rule: names.name_problem goes through safepath.rel_problem, so a look-alike of
    '/' or '.' (U+2215, U+FF0E) in a blob name is refused like '..' is."""
    seed(store, "cs-look", {"lk/ok.txt": b"ok", "lk/a\u2215b.txt": b"1", "lk/\uff0e\uff0e": b"2"})
    r = _sync(azurite, "cs-look/lk/", tmp_path / "dest")
    assert r.returncode == 5, r.stderr
    assert "2 blob name(s) refused" in r.stderr
    assert tree(tmp_path / "dest") == {"ok.txt": hashlib.sha256(b"ok").hexdigest()}
