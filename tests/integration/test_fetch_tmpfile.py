"""A download's temporary file is always a new file of its own in the cache's tmp folder:
created with O_EXCL and O_NOFOLLOW (mode 0600), never written through a link or into a
file that was already at its name (issue 16, containment of the fetch path).

The names `ContentStore.tmp_path` gives are random (pid + 128 random bits), so nothing can
be planted there in advance in practice; these tests hand the fetch a planted name directly
to show the open itself never writes through it, on both the whole-blob and the ranged
path (the code before wrote the body into a planted link's target)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_spec_doc, seed

from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore
from node_agent.sync.access import Access
from node_agent.sync.fetch import Fetcher
from node_agent.sync.store import ContentStore

SMALL = b"small body\n" * 10
BIG = os.urandom(3 * 1024 * 1024)  # above fetch.SMALL: the ranged path


@pytest.fixture
def fetcher(azurite: AzuriteServer) -> Iterator[Fetcher]:
    spec = spec_from_data(make_spec_doc(azurite.account_url))
    seed(BlobStore(spec.storage, Redactor()), "tmpfile", {"s.bin": SMALL, "b.bin": BIG})
    f = Fetcher(Access(spec.storage, Redactor()), "tmpfile", retry_s=2)
    yield f
    f.close()


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
@pytest.mark.parametrize("name,body", [("s.bin", SMALL), ("b.bin", BIG)])
def test_a_link_planted_at_the_temporary_name_is_not_written_through(
    fetcher: Fetcher, tmp_path: Path, name: str, body: bytes, kind: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    cstore = ContentStore(tmp_path / "cache")
    tmp = cstore.tmp_path()
    if kind == "symlink":
        tmp.symlink_to(victim)
    else:
        os.link(victim, tmp)
    got = fetcher.fetch(name, len(body), None, tmp)
    assert victim.read_bytes() == b"do not touch"
    assert got.size == len(body) and tmp.read_bytes() == body
    st = os.lstat(tmp)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1


@pytest.mark.parametrize("name,body", [("s.bin", SMALL), ("b.bin", BIG)])
def test_the_temporary_file_is_new_and_private(
    fetcher: Fetcher, tmp_path: Path, name: str, body: bytes
) -> None:
    cstore = ContentStore(tmp_path / "cache")
    tmp = cstore.tmp_path()
    got = fetcher.fetch(name, len(body), None, tmp)
    assert got.size == len(body) and tmp.read_bytes() == body
    assert stat.S_IMODE(os.lstat(tmp).st_mode) == 0o600


def test_temporary_names_are_unpredictable(tmp_path: Path) -> None:
    cstore = ContentStore(tmp_path / "cache")
    names = {cstore.tmp_path().name for _ in range(1000)}
    assert len(names) == 1000
    assert all(len(n.split("-", 1)[1].removesuffix(".part")) >= 32 for n in names)
