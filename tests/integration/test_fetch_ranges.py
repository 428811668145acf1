"""Ranged downloads of many big blobs at once: all complete, bytes and hashes right, and the
memory bound (parts held at once) never deadlocks the blobs waiting for it."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import make_spec_doc

from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync import fetch
from node_agent.sync.access import Access


def test_many_big_blobs_share_a_small_part_budget(
    azurite: AzuriteServer, store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 blobs of 8 parts each, fetched by 16 threads, with room for only 4 parts in memory:
    # more blobs want parts than there are permits, the case that once deadlocked
    monkeypatch.setattr(fetch, "PART_SIZE", 64 * 1024)
    monkeypatch.setattr(fetch, "PARTS_IN_MEMORY", 4)
    store.ensure_container("ranges")
    cc = store.container("ranges")
    blobs = {f"b{i:02d}": os.urandom(8 * 64 * 1024 - i) for i in range(16)}
    for name, data in blobs.items():
        cc.upload_blob(name, data, overwrite=True)
    spec = spec_from_data(make_spec_doc(azurite.account_url))
    f = fetch.Fetcher(Access(spec.storage, Redactor()), "ranges", connections=8)
    try:
        listed = {b.name: b for b in f.list("")}
        with ThreadPoolExecutor(16) as ex:
            futs = {
                n: ex.submit(
                    f.fetch, n, listed[n].size, listed[n].md5, tmp_path / n, listed[n].etag
                )
                for n in blobs
            }
            got = {n: fu.result(timeout=120) for n, fu in futs.items()}
    finally:
        f.close()
    for name, data in blobs.items():
        assert (tmp_path / name).read_bytes() == data
        assert got[name].sha256 == hashlib.sha256(data).hexdigest()
        # every range pinned to the listed version (If-Match), none of them changed
        assert (got[name].etag, got[name].changed) == (listed[name].etag, False)
    assert f.parts._value == 4  # every permit given back  # type: ignore[attr-defined]
