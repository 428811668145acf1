"""The sync engine's memory does not grow with the number of blobs (issue 16, 100,000 files):
a no-op re-sync keeps no whole-source maps (blob rows, object rows, the view before and
after, the names seen); those are read per page and written to the scratch view. And the
scratch view survives a heal of the state DB mid-sync.

The listing is the engine's input: here it comes from memory (`_listing` overridden), as a
no-op fetches nothing; the state DB, content store and view are real files."""

from __future__ import annotations

import gc
import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from node_agent.sync.engine import SyncEngine
from node_agent.sync.items import Item
from node_agent.sync.progress import Progress
from node_agent.sync.state import StateDB, db_path
from node_agent.sync.store import ContentStore

URL = "http://127.0.0.1:1/devstoreaccount1"
SRC = f"{URL}/assets"


def _name(i: int) -> str:
    return f"p/f{i // 100:04d}/{i:06d}.bin"


def _data(i: int) -> bytes:
    return b"%d" % i


def _access() -> Any:
    """The real storage access of an emulator account (signs its SAS locally; the listing
    below never asks it for anything)."""
    from node_agent.redact import Redactor
    from node_agent.spec_storage import Storage
    from node_agent.sync.access import Access

    return Access(
        Storage.model_validate({"account_url": URL, "auth": {"kind": "emulator"}}), Redactor()
    )


class _Engine(SyncEngine):
    """The real engine; its listing of `n` blobs comes from memory."""

    n = 0

    def _listing(self, source: Any, fetcher: Any) -> Iterator[Item]:
        for i in range(self.n):
            data = _data(i)
            yield Item(_name(i)[2:], _name(i), len(data), f"etag{i}", hashlib.md5(data).digest())


def _seed(cache: Path, n: int) -> None:
    """`n` objects in the store and their blobs recorded, as a cold sync leaves them."""
    store = ContentStore(cache)
    objects, blobs = [], []
    for i in range(n):
        data = _data(i)
        h = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data).digest()
        p = store.object_path(h)
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o444)
        objects.append((h, len(data), p.stat().st_mtime_ns, md5))
        blobs.append((SRC, _name(i), len(data), f"etag{i}", md5, h))
    db = StateDB(db_path(cache / "state"), store.objects)
    db.record(objects, blobs)
    db.close()


def _sync(tmp: Path, n: int) -> Any:
    engine = _Engine(
        tmp / "cache",
        tmp / "cache" / "state",
        _access(),
        progress=Progress(SimpleNamespace()),  # type: ignore[arg-type]
    )
    engine.progress.enabled = False
    engine.n = n
    source = SimpleNamespace(name="s", container="assets", prefix="p/", manifest=None, dest="")
    try:
        return engine.sync("job", tmp / "view", [source])  # type: ignore[list-item]
    finally:
        engine.close()


def _noop_peak(tmp: Path, n: int) -> int:
    _seed(tmp / "cache", n)
    first = _sync(tmp, n)  # links the view (nothing to fetch: the store has it all)
    assert (first.listed, first.unchanged, first.downloaded) == (n, n, 0)
    gc.collect()
    tracemalloc.start()
    try:
        again = _sync(tmp, n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (again.listed, again.unchanged, again.downloaded) == (n, n, 0)
    return peak


def test_noop_memory_does_not_grow_with_the_blobs(tmp_path: Path) -> None:
    """Python memory of a no-op re-sync: 2,000 blobs, then 12,000. The code that held a
    whole-source map of every blob and object row, both views and the names seen grew by
    ~1.5 KB per blob; a page-at-a-time sync grows only by the name checker's and the
    prune's path sets (~0.2 KB)."""
    small = _noop_peak(tmp_path / "small", 2_000)
    big = _noop_peak(tmp_path / "big", 12_000)
    per_blob = (big - small) / 10_000
    assert per_blob < 500, f"no-op peak grew {per_blob:.0f} bytes per blob ({small} -> {big})"


def test_the_new_view_survives_a_heal_of_the_state_db(tmp_path: Path) -> None:
    """A state DB found damaged in the middle of a sync is moved aside and rebuilt (a new
    connection): the view being built is in its own scratch file, so the sync still ends
    with the whole view recorded."""
    from node_agent.sync.newview import NewView

    _seed(tmp_path / "cache", 50)
    store = ContentStore(tmp_path / "cache")
    db = StateDB(db_path(tmp_path / "cache" / "state"), store.objects)
    view = NewView(db.path)
    try:
        for i in range(50):
            view.add(f"f{i}", hashlib.sha256(_data(i)).hexdigest(), _name(i), 0, fetched=i < 3)
        view.flush()
        db.heal("test: damaged mid-sync")
        assert db.healed is not None
        replaced, n_replaced, deleted, n_deleted = db.replace_view("job", view.path, None, 10)
        assert (replaced, n_replaced, deleted, n_deleted) == ([], 0, [], 0)
        assert len(db.view_objects("job")) == 50
        assert all(row is not None for _, row in db.view_objects("job"))
        assert view.fetched(10) == ["f0", "f1", "f2"]
    finally:
        view.close()
        db.close()
    assert not view.path.exists()


def test_view_diff_and_unlisted_blobs_are_computed_in_sql(tmp_path: Path) -> None:
    """replace_view names the first replaced and deleted paths (sorted) and counts them all;
    forget_unseen drops the blob rows of a source that its listing no longer has."""
    from node_agent.sync.newview import NewView

    _seed(tmp_path / "cache", 30)
    db = StateDB(db_path(tmp_path / "cache" / "state"))
    h = [hashlib.sha256(_data(i)).hexdigest() for i in range(30)]
    first = NewView(db.path)
    for i in range(20):
        first.add(f"f{i:02d}", h[i], _name(i), 0, fetched=True)
    first.flush()
    db.replace_view("job", first.path, None, 5)
    first.close()
    second = NewView(db.path)
    for i in range(5, 30):  # f00-f04 deleted, f05-f09 replaced, f20-f29 new
        second.add(f"f{i:02d}", h[(i + 1) % 30] if i < 10 else h[i], _name(i), 0, fetched=False)
    second.flush()
    assert db.replace_view("job", second.path, None, 3) == (
        ["f05", "f06", "f07"],
        5,
        ["f00", "f01", "f02"],
        5,
    )
    view = {path: row.hash if row else None for path, row in db.view_objects("job")}
    assert view == {f"f{i:02d}": h[(i + 1) % 30] if i < 10 else h[i] for i in range(5, 30)}
    assert db.forget_unseen(SRC, "p/", second.path, 0) == 5  # blobs 0-4 are gone
    assert set(db.blobs_for(SRC, [_name(i) for i in range(30)])) == {_name(i) for i in range(5, 30)}
    second.close()
    db.close()


def test_a_scratch_view_left_by_a_killed_sync_is_removed(tmp_path: Path) -> None:
    """A sync killed mid-way leaves its scratch view beside the state DB; the next sync on
    the node removes it (its pid is gone), never one of a sync still running."""
    from node_agent.sync.newview import NewView

    db = db_path(tmp_path / "state")
    db.parent.mkdir()
    dead = db.with_name(f"{db.name}.view-999999999-0badc0de")  # above any pid_max
    dead.write_bytes(b"")
    alive = db.with_name(f"{db.name}.view-{os.getpid()}-0badc0de")
    alive.write_bytes(b"")
    view = NewView(db)
    view.close()
    assert not dead.exists() and alive.exists()
