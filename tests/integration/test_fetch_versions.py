"""Versions are pinned (issue 11, cases 4 and 13): every byte of a fetched blob comes from one
version of it. A blob overwritten while it is being read is fetched again, once, at its new
version (logged as "changed during sync"); one that keeps changing fails with its own message.

A small proxy in front of the real Azurite lets a test overwrite a blob at an exact point: after
the listing, between two ranges of one download, or before every GET."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest
from azure.storage.blob import BlobBlock
from helpers import make_spec, make_spec_doc, node_of, run_agent, run_job_prep, seed, write_spec
from helpers.proxy import StorageProxy

from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync import fetch
from node_agent.sync.access import Access

MB = 1024 * 1024
CHANGED = "changed during sync: fetched again at its new version"
KEPT = "kept changing during the sync (twice); re-run job prep when uploads have finished"


def _put_block_list(store: BlobStore, container: str, name: str, data: bytes) -> None:
    """Overwrite `name` the way AzCopy and the SDK do above their single-put size: staged
    blocks and a block list, so the blob has no Content-MD5."""
    bc = store.container(container).get_blob_client(name)
    ids = []
    for i in range(0, len(data), 8 * MB):
        ids.append(f"{i // (8 * MB):08d}".encode().hex())
        bc.stage_block(ids[-1], data[i : i + 8 * MB])
    bc.commit_block_list([BlobBlock(block_id=i) for i in ids])


def _range_start(headers: dict[str, str]) -> int | None:
    rng = headers.get("x-ms-range") or headers.get("range")
    return int(rng.split("=")[1].split("-")[0]) if rng else None


def _sync(source: str, dest: Path, account_url: str) -> subprocess.CompletedProcess[str]:
    args = ["sync", source, str(dest)]
    args += ["--account-url", account_url, "--cache", str(dest.parent / "cache")]
    return run_agent(args)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_temp_left(cache: Path) -> None:
    tmp = cache / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir()), "a temp download was left behind"


# --- case 4: a big blob overwritten between its ranges ------------------------------------


def test_big_blob_overwritten_after_its_first_range_is_fetched_whole_at_the_new_version(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """40 MB, a block list without Content-MD5 (nothing to catch a torn file by its hash),
    overwritten once the first 16 MB range has reached node_agent: the file is entirely the
    new version, and the change is logged once."""
    old, new = os.urandom(40 * MB), os.urandom(40 * MB)
    store.ensure_container("versions")
    _put_block_list(store, "versions", "big/plate.exr", old)
    seed(store, "versions", {"big/notes.txt": b"unchanged"})
    first_landed, overwritten = threading.Event(), threading.Event()
    lock = threading.Lock()

    def before(method: str, path: str, headers: dict[str, str]) -> None:
        start = _range_start(headers)
        if method != "GET" or not path.endswith("plate.exr") or not start:
            return
        assert first_landed.wait(120)
        with lock:
            if not overwritten.is_set():
                _put_block_list(store, "versions", "big/plate.exr", new)
                overwritten.set()

    def after(method: str, path: str, headers: dict[str, str]) -> None:
        if path.endswith("plate.exr") and _range_start(headers) == 0:
            first_landed.set()

    proxy = StorageProxy(azurite.account_url, before, after)
    try:
        r = _sync("versions/big/", tmp_path / "out", proxy.url)
    finally:
        proxy.close()
    assert overwritten.is_set(), "the blob was never overwritten mid-download"
    assert r.returncode == 0, r.stderr
    got = _file_sha(tmp_path / "out" / "plate.exr")
    assert got != _sha(old[: 16 * MB] + new[16 * MB :]), "torn: old first range + new rest"
    assert got == _sha(new)
    assert r.stderr.count(CHANGED) == 1, r.stderr
    assert "blob 'versions/big/plate.exr' " + CHANGED in r.stderr
    assert (tmp_path / "out" / "notes.txt").read_bytes() == b"unchanged"
    _no_temp_left(tmp_path / "cache")


# --- a blob that changes on every attempt ---------------------------------------------------


@pytest.mark.parametrize("size", [3000, fetch.PART_SIZE + MB], ids=["small", "ranged"])
def test_blob_that_keeps_changing_fails_with_its_own_message(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, size: int
) -> None:
    """Every GET of the blob is preceded by an upload of a new version: after one fetch
    again, the sync fails with exit 5 and a message that says what happened (not a corruption
    message), and no temp file is left."""
    container = "versions-churn"
    store.ensure_container(container)
    name = f"churn{size}/scene.bin"
    seed(store, container, {name: os.urandom(size)})  # single put: it has a Content-MD5
    n = [0]

    def before(method: str, path: str, headers: dict[str, str]) -> None:
        if method == "GET" and path.endswith(name):
            n[0] += 1
            seed(store, container, {name: os.urandom(size)})

    proxy = StorageProxy(azurite.account_url, before)
    try:
        r = _sync(f"{container}/churn{size}/", tmp_path / "out", proxy.url)
    finally:
        proxy.close()
    assert r.returncode == 5, (r.returncode, r.stderr)  # ExitCode.ASSETS
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("node-agent:")]
    assert len(errors) == 1, r.stderr
    assert f"blob '{container}/{name}' {KEPT}" in errors[0], errors[0]
    assert "Content-MD5" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count(CHANGED) == 1, r.stderr
    assert not (tmp_path / "out" / "scene.bin").exists()
    _no_temp_left(tmp_path / "cache")


# --- case 13: a small blob changed between the listing and its GET ------------------------


@pytest.mark.parametrize("new", [b"scene v2" * 100, b"scene v2, saved again" * 100])
def test_small_blob_changed_after_the_listing_job_prep_succeeds(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, new: bytes
) -> None:
    """One of 20 small blobs is overwritten after it was listed, before it is read, with
    content of the same size or another: job prep exits 0 with that file at its new version
    (it used to fail the whole job prep with exit 4 and 'content does not match its
    Content-MD5', or 'got N bytes, expected M')."""
    files = {f"c13/tex/t{i:02d}.png": f"texture {i} ".encode() * 200 for i in range(20)}
    files["c13/scene.blend"] = b"scene v1" * 100
    seed(store, "versions-small", files)
    done = threading.Event()

    def before(method: str, path: str, headers: dict[str, str]) -> None:
        if method == "GET" and path.endswith("c13/scene.blend") and not done.is_set():
            done.set()
            seed(store, "versions-small", {"c13/scene.blend": new})

    proxy = StorageProxy(azurite.account_url, before)
    spec = write_spec(tmp_path / "job.json", make_spec(proxy.url, "versions-small", "c13/"))
    root = tmp_path / "node"
    try:
        r = run_job_prep(root, "job-a", spec)
    finally:
        proxy.close()
    assert done.is_set()
    assert r.returncode == 0, r.stderr
    assets = node_of(root, "job-a").job_assets_dir()
    assert (assets / "scene.blend").read_bytes() == new
    for i in range(20):
        assert (assets / "tex" / f"t{i:02d}.png").read_bytes() == files[f"c13/tex/t{i:02d}.png"]
    assert "blob 'versions-small/c13/scene.blend' " + CHANGED in r.stderr
    assert "Content-MD5" not in r.stderr and "expected" not in r.stderr


# --- the fetcher itself: what it reports, what it sends ------------------------------------


def _fetcher(account_url: str, container: str) -> fetch.Fetcher:
    spec = spec_from_data(make_spec_doc(account_url))
    return fetch.Fetcher(Access(spec.storage, Redactor()), container, connections=8)


@pytest.mark.parametrize("path", ["lean", "sdk"])
def test_fetch_reports_the_version_it_read(
    azurite: AzuriteServer,
    store: BlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """Listed at one version, overwritten (with another size) before the fetch: the result
    says the etag and size really fetched and `changed`; an unchanged blob says its listed
    etag and not `changed`. With no SAS (managed identity) the SDK path does the same."""
    monkeypatch.setattr(fetch, "PART_SIZE", 64 * 1024)
    store.ensure_container("versions-api")
    old, new = os.urandom(200 * 1024), os.urandom(300 * 1024 + 7)
    _put_block_list(store, "versions-api", f"{path}/big.bin", old)
    seed(store, "versions-api", {f"{path}/small.txt": b"v1" * 10, f"{path}/same.txt": b"same"})
    f = _fetcher(azurite.account_url, "versions-api")
    if path == "sdk":
        f.sas = None
    try:
        listed = {b.name: b for b in f.list(f"{path}/")}
        _put_block_list(store, "versions-api", f"{path}/big.bin", new)
        seed(store, "versions-api", {f"{path}/small.txt": b"v2" * 30})
        now = {b.name: b for b in f.list(f"{path}/")}
        for name, data in ((f"{path}/big.bin", new), (f"{path}/small.txt", b"v2" * 30)):
            b = listed[name]
            got = f.fetch(name, b.size, b.md5, tmp_path / "t", etag=b.etag)
            assert (tmp_path / "t").read_bytes() == data
            assert (got.sha256, got.size, got.etag, got.changed) == (
                _sha(data),
                len(data),
                now[name].etag,
                True,
            )
        b = listed[f"{path}/same.txt"]
        got = f.fetch(b.name, b.size, b.md5, tmp_path / "s", etag=b.etag)
        assert (got.size, got.etag, got.changed) == (4, b.etag, False)
        assert f.changes == 2
    finally:
        f.close()


def test_unchanged_blobs_cost_no_extra_request(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pin is a header on the GETs a fetch makes anyway: one GET per small blob, one per
    range, each with If-Match on the listed etag; no HEAD unless something changed."""
    monkeypatch.setattr(fetch, "PART_SIZE", 64 * 1024)
    store.ensure_container("versions-cost")
    _put_block_list(store, "versions-cost", "c/big.bin", os.urandom(5 * 64 * 1024 - 3))
    seed(store, "versions-cost", {"c/small.txt": b"small"})
    proxy = StorageProxy(azurite.account_url)
    f = _fetcher(proxy.url, "versions-cost")
    try:
        for b in f.list("c/"):
            got = f.fetch(b.name, b.size, b.md5, tmp_path / "t", etag=b.etag)
            assert not got.changed and got.etag == b.etag
            gets = proxy.gets(b.name)
            assert len(gets) == (5 if b.name.endswith("big.bin") else 1)
            assert {h.get("if-match", "").strip('"') for h in gets} == {b.etag}
    finally:
        f.close()
        proxy.close()
    assert not [m for m, _p, _h in proxy.seen if m != "GET"]


def test_bytes_that_do_not_match_their_own_md5_are_still_corruption(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path
) -> None:
    """A guard, not a fix: a blob whose stored Content-MD5 does not match its bytes (and that
    did not change) is not taken for a change: exit 4, the corruption message, no fetch again."""
    from azure.storage.blob import ContentSettings

    store.ensure_container("versions-bad")
    seed(store, "versions-bad", {"bad/scene.blend": b"scene bytes"})
    bc = store.container("versions-bad").get_blob_client("bad/scene.blend")
    bc.set_http_headers(ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest())))
    r = _sync("versions-bad/bad/", tmp_path / "out", azurite.account_url)
    assert r.returncode == 4, r.stderr
    assert "blob 'versions-bad/bad/scene.blend': content does not match its Content-MD5" in r.stderr
    assert CHANGED not in r.stderr and "kept changing" not in r.stderr
    _no_temp_left(tmp_path / "cache")


@pytest.mark.parametrize("shape", ["small", "ranged"])
def test_a_blob_fetched_again_is_recorded_at_its_new_version(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, shape: str
) -> None:
    container, name = "versions-record", f"{shape}/scene.bin"
    old, new = (
        (os.urandom(3000), os.urandom(5000))
        if shape == "small"
        else (os.urandom(17 * MB), os.urandom(18 * MB))
    )
    store.ensure_container(container)
    if shape == "small":
        seed(store, container, {name: old})
    else:
        _put_block_list(store, container, name, old)
    done = threading.Event()

    def before(method: str, path: str, headers: dict[str, str]) -> None:
        if method == "GET" and path.endswith(name) and not done.is_set():
            done.set()
            if shape == "small":
                seed(store, container, {name: new})
            else:
                _put_block_list(store, container, name, new)

    proxy = StorageProxy(azurite.account_url, before)
    try:
        r = _sync(f"{container}/{shape}/", tmp_path / "out", proxy.url)
        assert r.returncode == 0, r.stderr
        assert CHANGED in r.stderr
        assert "1 changed during sync" in r.stdout + r.stderr  # the summary counts it
        assert _file_sha(tmp_path / "out" / "scene.bin") == _sha(new)
        r = _sync(f"{container}/{shape}/", tmp_path / "out", proxy.url)  # the same source
    finally:
        proxy.close()
    assert r.returncode == 0, r.stderr
    assert "1 listed, 1 unchanged, 0 downloaded" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "cached content" not in r.stderr
