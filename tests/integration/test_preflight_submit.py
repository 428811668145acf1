"""`batch submit --assets` and `validate` run the scene preflight first: a texture left out
of the folder refuses the job before anything is uploaded (exit 12, named), an omitted
render.frames is filled from the scene into the submitted spec, --strict turns a frame
range outside the scene's into an error (issue 13). Real Blender scene, real Azurite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import shot_job_doc

from node_agent.azurite import AzuriteServer
from node_agent.batch.jobjson import SPEC_CONTAINER, spec_blob
from node_agent.errors import StorageError
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore

# a closed port: the Batch request fails fast once submit gets that far (exit 3)
ENDPOINT = "http://127.0.0.1:9"


def _assets(scene: Path, tmp: Path, drop: tuple[str, ...] = ()) -> Path:
    dest = tmp / "assets"
    shutil.copytree(scene, dest)
    for rel in drop:
        (dest / rel).unlink()
    return dest


def _agent(
    tmp: Path, doc: dict[str, object], words: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`node-agent <words> job.yaml <args>`."""
    spec = tmp / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ")}
    env["AZURE_BATCH_ACCESS_KEY"] = "a2V5"  # shared key: no Entra ID lookup
    cmd = [sys.executable, "-m", "node_agent", *words, str(spec), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


IDENTITY = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/render/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/render-nodes"
)


def _submit(tmp: Path, doc: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    pool = tmp / "pool.yaml"
    pool.write_text(yaml.safe_dump({"identity_resource_id": IDENTITY}))
    return _agent(
        tmp, doc, ["batch", "submit"], "--endpoint", ENDPOINT, "--pool-settings", str(pool), *args
    )


def _blobs(store: BlobStore, container: str) -> list[str]:
    try:
        return [b.name for b in store.list_blobs(container)]
    except StorageError:
        return []  # no such container


def _doc(azurite: AzuriteServer, job: str, container: str, **render: object) -> dict[str, object]:
    return shot_job_doc(azurite.account_url, job, container, **render)


def test_submit_refuses_a_missing_texture_before_uploading(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    doc = _doc(azurite, "pf-submit", "pf-submit-assets")
    del doc["render"]["frames"]  # type: ignore[attr-defined]
    store = BlobStore(spec_from_data(doc).storage, Redactor())
    assets = _assets(blender_scene, tmp_path, ("textures/stripes.png",))

    r = _submit(tmp_path, doc, "--assets", str(assets))
    assert r.returncode == 12, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and "'textures/stripes.png'" in lines[0], r.stderr
    assert "render.scene 'spin.blend': 1 file(s) the render needs are missing" in r.stderr
    assert _blobs(store, "pf-submit-assets") == []  # refused before any upload
    assert f"{SPEC_CONTAINER}/{spec_blob('pf-submit')}" not in [
        f"{SPEC_CONTAINER}/{b}" for b in _blobs(store, SPEC_CONTAINER)
    ]

    # --allow-missing: a warning naming it, then the upload and the Batch request (exit 3 here)
    r = _submit(tmp_path, doc, "--assets", str(assets), "--allow-missing")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "submit: warning: preflight: missing dependency 'textures/stripes.png'" in r.stdout
    # pushed as `assets push` does (content by hash, a manifest) and pinned in the spec sent
    pin = store.read_blob("pf-submit-assets", "shot/manifests/latest").decode()
    assert f"shot/manifests/{pin}.json" in _blobs(store, "pf-submit-assets")
    # the submitted spec carries the scene's range (spin.blend: 1-24), not an omitted one
    sent = json.loads(store.read_blob(SPEC_CONTAINER, spec_blob("pf-submit")))
    assert sent["render"]["frames"] == "1-24"
    assert sent["assets"][0]["manifest"] == pin


def test_strict_makes_frames_outside_the_scene_an_error(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    doc = _doc(azurite, "pf-strict", "pf-strict-assets", frames="1-30")
    store = BlobStore(spec_from_data(doc).storage, Redactor())
    assets = _assets(blender_scene, tmp_path)
    warning = "render.frames: 6 frame(s) outside the scene's range 1-24 (first: 25)"

    r = _agent(tmp_path, doc, ["validate"], "--assets", str(assets), "--strict")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [f"node-agent: error: {warning} (--strict)"]
    r = _agent(tmp_path, doc, ["validate"], "--assets", str(assets))
    assert r.returncode == 0 and f"warning: {warning}" in r.stderr, r.stderr

    r = _submit(tmp_path, doc, "--assets", str(assets), "--strict")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"node-agent: error: {warning} (--strict)" in r.stderr
    assert _blobs(store, "pf-strict-assets") == []
    r = _submit(tmp_path, doc, "--assets", str(assets))
    assert r.returncode == 3, r.stdout + r.stderr  # past the preflight, at Batch
    assert f"submit: warning: {warning}" in r.stdout
