"""Local-pool jobs: a one-file upload and the stand-in renderer that records what it rendered."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers.node import STANDINS, make_spec_doc, upload_tree
from node_agent.storage import BlobStore


def uploaded_job_doc(
    account_url: str,
    store: BlobStore,
    tmp_path: Path,
    job_id: str,
    *,
    prefix: str | None = None,
    blend: bytes = b"x",
    **render: object,
) -> dict:
    """A job `job_id` whose assets, one spin.blend holding `blend` (made in tmp_path/src), are
    uploaded to assets/`prefix` (default: `job_id`/)."""
    prefix = prefix or f"{job_id}/"
    src = tmp_path / "src"
    src.mkdir()
    (src / "spin.blend").write_bytes(blend)
    upload_tree(store, src, "assets", prefix)
    doc = make_spec_doc(account_url, **render)
    doc["job_id"] = job_id
    doc["assets"][0]["prefix"] = prefix  # type: ignore[index]
    return doc


def pool_job_doc(
    account_url: str, store: BlobStore, tmp_path: Path, job_id: str, **render: object
) -> dict:
    """A `custom` job `job_id` whose assets (one spin.blend) are uploaded to assets/<job_id>/."""
    return uploaded_job_doc(account_url, store, tmp_path, job_id, renderer="custom", **render)


def pool_stand_in(state: Path, fail_task: str = "none") -> list[str]:
    """The stand-in renderer's command (standins/pool_test_renderer.py); it records what it
    rendered in state/ and fails task `fail_task` on its first attempt."""
    return [
        sys.executable,
        str(STANDINS / "pool_test_renderer.py"),
        "{output_dir}",
        "{frames}",
        str(state),
        fail_task,
        "{task_id}",
    ]


def stand_in_job_doc(
    account_url: str,
    store: BlobStore,
    tmp_path: Path,
    job_id: str,
    *,
    fail_task: str = "none",
    **render: object,
) -> tuple[dict, Path]:
    """`pool_job_doc` rendered by `pool_stand_in`, and the stand-in's record folder
    (tmp_path/state, made here)."""
    state = tmp_path / "state"
    state.mkdir()
    command = pool_stand_in(state, fail_task)
    return pool_job_doc(account_url, store, tmp_path, job_id, command=command, **render), state
