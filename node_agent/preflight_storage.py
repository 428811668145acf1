"""The preflight against storage: what the spec's asset sources hold, checked without
syncing them (`validate --storage`, `local run`, `batch submit` without `--assets`).

First each `manifest: latest` is resolved to the hash of the project's last push
(pins.resolve_latest): the spec returned, which submit and local run hand to the nodes,
names that hash, so a push during the job changes nothing for it.

Each source is listed (a pinned manifest is read instead: its files by path), and the job's
assets folder is laid out in a temporary folder as the node's view would be: the scene
file(s) and every file the scanner may read as a scene (same suffix as render.scene: a
linked .blend library, a referenced .ma, a procedural .ass) are downloaded; every other
file is an empty stand-in of its name, which is all a presence check needs. The scan then
runs on that folder exactly as on a workstation folder (preflight.scan, outside_ok=False).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from node_agent import preflight
from node_agent.pins import resolve_latest
from node_agent.redact import Redactor
from node_agent.safepath import split_rel
from node_agent.spec import AssetSource, JobSpec
from node_agent.storage import BlobStore
from node_agent.storage.retry import policy
from node_agent.sync.manifest import parse, project_prefix
from node_agent.sync.names import NameChecker


def source_files(store: BlobStore, source: AssetSource) -> Iterator[tuple[str, str, int]]:
    """(path in the job's assets, blob name, size) of each file of one asset source."""
    dest = source.dest.rstrip("/")
    prefix = project_prefix(source.prefix)
    if source.manifest:
        blob = f"{prefix}manifests/{source.manifest}.json"
        what = f"manifest {source.manifest[:12]} in '{source.container}/{prefix}'"
        for f in parse(store.read_blob(source.container, blob), what):
            yield (f"{dest}/{f.path}" if dest else f.path), f"{prefix}content/{f.sha256}", f.size
        return
    for b in store.list_blobs(source.container, source.prefix):
        if b.name.endswith("/"):
            continue  # a folder marker
        rel = b.name[len(source.prefix) :]
        yield (f"{dest}/{rel}" if dest else rel), b.name, b.size


def lay_out(spec: JobSpec, store: BlobStore, root: Path) -> int:
    """The job's assets as the node's view would hold them, under `root`: scene-like files
    downloaded, the rest empty stand-ins. A name the sync would refuse is left out (job
    prep names it). Returns the number of files."""
    suffix = PurePosixPath(spec.render.scene).suffix.lower()
    n = 0
    checker = NameChecker()  # the sync's own rule: unsafe names, file/folder clashes
    for source in spec.assets:
        for rel, blob, size in source_files(store, source):
            if checker.check(rel) is not None:
                continue
            path = root.joinpath(*split_rel(rel, "asset"))
            if path.is_file():
                continue  # an earlier source wins, as in the sync
            if suffix and PurePosixPath(rel).suffix.lower() == suffix:
                store.download_file(source.container, blob, path, size)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            n += 1
    return n


def check_storage(
    spec: JobSpec,
    *,
    allow_missing: bool,
    strict: bool,
    log: logging.Logger,
    where: str,
    redactor: Redactor | None = None,
) -> JobSpec:
    """The spec's assets in storage checked as the node will see them: the returned spec
    has each `manifest: latest` pinned to the last push's hash and an omitted
    render.frames filled from the scene; MissingAssetError (exit 12) names
    every missing dependency unless `allow_missing`; with `strict` a frame outside the
    scene's range is a SpecError (exit 2)."""
    store = BlobStore(spec.storage, redactor or Redactor(), retry=policy(spec.policies))
    spec = resolve_latest(spec, store, lambda line: log.info("%s", line))
    with tempfile.TemporaryDirectory(prefix="node-agent-preflight-") as tmp:
        root = Path(tmp)
        n = lay_out(spec, store, root)
        log.info("preflight: %d file(s) listed in the job's asset sources", n)
        spec, notes = preflight.with_scene_frames(spec, root)
        for note in preflight.strict_notes(notes, strict=strict):
            log.warning("%s", note)
        preflight.enforce(
            spec.render, root, allow_missing=allow_missing, log=log, where=where, outside_ok=False
        )
    return spec
