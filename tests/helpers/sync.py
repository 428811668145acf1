"""Sync tests: seed blobs, write a job spec, run job prep as a process, read what it left."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from helpers.cli import run_agent, start_agent
from helpers.node import agent_dir, make_spec_doc, node_env
from node_agent.batchenv import BatchNode
from node_agent.redact import Redactor
from node_agent.spec import JobSpec, spec_from_data
from node_agent.storage import BlobStore


def seed(store: BlobStore, container: str, files: dict[str, bytes], *, md5: bool = True) -> None:
    store.ensure_container(container)
    cc = store.container(container)
    for name, data in files.items():
        if md5:
            cc.upload_blob(name, data, overwrite=True)
        else:  # a block list: no Content-MD5 on the blob
            bc = cc.get_blob_client(name)
            bc.stage_block("YmxvY2sx", data)
            bc.commit_block_list(["YmxvY2sx"])


def make_spec(
    account_url: str, container: str, prefix: str, job: str = "job-a", **extra: object
) -> dict[str, object]:
    doc = make_spec_doc(account_url)
    doc["job_id"] = job
    doc["assets"] = [{"name": "scene", "container": container, "prefix": prefix, **extra}]
    doc["render"] = {"renderer": "blender", "scene": "scene.blend", "frames": "1"}
    return doc


def write_spec(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def start_job_prep(root: Path, job: str, spec: Path, **popen: Any) -> subprocess.Popen[Any]:
    """Start job prep of `spec` for `job` on the node at `root`, as a process (popen options
    such as stdout, stderr and text pass through)."""
    return start_agent(["job-prep", "--spec", str(spec)], node_env(root, job), **popen)


def run_job_prep(root: Path, job: str, spec: Path) -> subprocess.CompletedProcess[str]:
    return run_agent(["job-prep", "--spec", str(spec)], node_env(root, job))


def node_of(root: Path, job: str) -> BatchNode:
    return BatchNode.from_env(node_env(root, job))


def spec_store(doc: dict[str, object]) -> tuple[JobSpec, BlobStore]:
    spec = spec_from_data(doc)
    return spec, BlobStore(spec.storage, Redactor())


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def digests(files: dict[str, bytes], prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def summary(root: Path, job: str) -> dict[str, object]:
    node = node_of(root, job)
    return dict(json.loads((node.task_dir / "sync-summary.json").read_text()))


def count_objects(root: Path) -> int:
    objs = agent_dir(root) / "cache" / "objects"
    return sum(1 for _ in objs.rglob("*") if _.is_file()) if objs.exists() else 0
