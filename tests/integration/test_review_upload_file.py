"""BlobStore.upload_file on a node never reads through a link: a file swapped for a link (to
any file root can read) is refused by name and nothing is uploaded. A workstation's own
project links are still pushed when the caller says so (`assets push`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from node_agent.safepath import ContainmentError
from node_agent.storage import BlobStore


def test_a_link_is_refused_and_nothing_is_uploaded(tmp_path: Path, store: BlobStore) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$hash\n")
    link = tmp_path / "stderr.txt"
    link.symlink_to(secret)
    store.ensure_container("review-upload")
    with pytest.raises(ContainmentError, match="symbolic link"):
        store.upload_file(link, "review-upload", "t/stderr.txt")
    assert [b.name for b in store.list_blobs("review-upload")] == []


def test_a_fifo_is_refused_not_blocked_on(tmp_path: Path, store: BlobStore) -> None:
    fifo = tmp_path / "stdout.txt"
    os.mkfifo(fifo)
    store.ensure_container("review-upload-fifo")
    with pytest.raises(ContainmentError, match="not a regular file"):
        store.upload_file(fifo, "review-upload-fifo", "t/stdout.txt")


def test_a_workstation_link_is_followed_when_asked(tmp_path: Path, store: BlobStore) -> None:
    target = tmp_path / "texture.exr"
    target.write_bytes(b"exr")
    link = tmp_path / "linked.exr"
    link.symlink_to(target)
    store.ensure_container("review-upload-follow")
    store.upload_file(link, "review-upload-follow", "p/linked.exr", follow_links=True)
    assert store.read_blob("review-upload-follow", "p/linked.exr") == b"exr"
