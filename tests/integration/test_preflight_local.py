"""`local run` and `validate --storage` check the upload in storage before any node starts:
a Blender scene whose upload lacks one texture (in a subfolder) is refused with exit 12
naming it; with --allow-missing the nodes run and job prep fails on the node with exit 12
naming the same path (issue 13, "Done when"). Real Blender scene, real Azurite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import make_spec_doc, shot_job_doc, upload_tree

from node_agent.azurite import AzuriteServer
from node_agent.redact import Redactor
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore

TEXTURE = "textures/stripes.png"


def _agent(tmp: Path, doc: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
    spec = tmp / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZ_BATCH_")}
    cmd = [sys.executable, "-m", "node_agent", *args[0].split(), str(spec), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)


def _upload_without_texture(
    azurite: AzuriteServer, scene: Path, tmp: Path, job: str, container: str
) -> dict[str, object]:
    upload = tmp / "upload"
    shutil.copytree(scene, upload)
    (upload / TEXTURE).unlink()
    doc = shot_job_doc(azurite.account_url, job, container, frames="1-2")
    store = BlobStore(spec_from_data(doc).storage, Redactor())
    assert upload_tree(store, upload, container, "shot/") == 2  # spin.blend + checker.png
    return doc


def test_local_run_refuses_an_upload_lacking_a_texture(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    doc = _upload_without_texture(azurite, blender_scene, tmp_path, "pf-local", "pf-local-assets")
    pool = tmp_path / "pool"

    r = _agent(tmp_path, doc, "local run", "--workdir", str(pool), "--nodes", "1")
    assert r.returncode == 12, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and f"'{TEXTURE}'" in lines[0], r.stderr
    assert "local run: render.scene 'spin.blend': 1 file(s) the render needs are missing" in (
        r.stderr
    )
    assert not (pool / "localpool" / "nodes").exists()  # refused before any node started

    r = _agent(
        tmp_path, doc, "local run", "--workdir", str(pool), "--nodes", "1", "--allow-missing"
    )
    assert r.returncode == 12, r.stdout + r.stderr
    assert f"local pool: warning: preflight: missing dependency '{TEXTURE}'" in r.stdout
    prep = pool / "localpool" / "nodes" / "node-1" / "workitems" / "pf-local"
    errs = [p.read_text() for p in prep.rglob("stderr.txt")]
    assert any(
        "job prep: render.scene 'spin.blend': 1 file(s)" in e and f"'{TEXTURE}'" in e for e in errs
    ), errs


def test_validate_storage_names_the_texture_left_out(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    doc = _upload_without_texture(azurite, blender_scene, tmp_path, "pf-val", "pf-val-assets")
    del doc["render"]["frames"]  # type: ignore[attr-defined]
    r = _agent(tmp_path, doc, "validate", "--storage")
    assert r.returncode == 12, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and f"'{TEXTURE}'" in lines[0], r.stderr
    assert "written '//textures/stripes.png'" in lines[0]

    r = _agent(tmp_path, doc, "validate", "--storage", "--allow-missing")
    assert r.returncode == 0, r.stderr
    assert "24 frames" in r.stdout  # the scene's range, read from the downloaded .blend
    assert f"warning: preflight: missing dependency '{TEXTURE}'" in r.stderr


def test_validate_storage_reads_a_pinned_manifest(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    """A source pinned to an `assets push` manifest: its files are the manifest's paths
    (content blobs are named by hash), the scene downloaded from its content blob."""
    upload = tmp_path / "upload"
    shutil.copytree(blender_scene, upload)
    (upload / TEXTURE).unlink()
    push = subprocess.run(
        [sys.executable, "-m", "node_agent", "assets", "push", str(upload), "--project"]
        + ["pf-pinned", "--container", "pf-pinned", "--account-url", azurite.account_url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert push.returncode == 0, push.stderr
    pin = re.findall(r"\b[0-9a-f]{64}\b", push.stdout + push.stderr)[-1]
    doc = make_spec_doc(azurite.account_url, frames="1-2")
    doc["job_id"] = "pf-pinned"
    doc["assets"] = [
        {"name": "scene", "container": "pf-pinned", "prefix": "pf-pinned/", "manifest": pin}
    ]
    r = _agent(tmp_path, doc, "validate", "--storage")
    assert r.returncode == 12, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "missing dependency" in ln]
    assert len(lines) == 1 and f"'{TEXTURE}'" in lines[0], r.stderr


def test_local_run_strict_refuses_frames_outside_the_scene_before_any_node(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    """`local run --strict`: a frame range past the scene's end is exit 2, one line, and no
    node folder is made (without --strict it is a warning)."""
    doc = shot_job_doc(azurite.account_url, "pf-local-strict", "pf-local-strict", frames="1-30")
    store = BlobStore(spec_from_data(doc).storage, Redactor())
    upload_tree(store, blender_scene, "pf-local-strict", "shot/")
    pool = tmp_path / "pool"
    r = _agent(tmp_path, doc, "local run", "--workdir", str(pool), "--nodes", "1", "--strict")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "outside the scene's range 1-24" in r.stderr and "(--strict)" in r.stderr
    assert not (pool / "localpool" / "nodes").exists()
