"""`assets push` pins (issue 13): the spec lines to paste, `--write-spec` updating the pin of
a job spec in place, one unit style for sizes; `manifest: latest` resolved to the hash when
the job is handed over (batch submit, local run), so a running job never sees a newer push.
Real Azurite, node-agent as a process."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import make_spec, node_of, run_agent, run_job_prep

from node_agent.azurite import AzuriteServer
from node_agent.errors import AssetError
from node_agent.pins import LATEST
from node_agent.preflight_storage import check_storage
from node_agent.spec import AssetSource, JobSpec, spec_from_data
from node_agent.sync.store import ContentStore

HASH = re.compile(r"\b[0-9a-f]{64}\b")


def _push(
    azurite: AzuriteServer, what: Path, home: Path, project: str, *extra: str
) -> tuple[int, str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    args = ["assets", "push", str(what), "--project", project, "--container", "pins"]
    r = run_agent([*args, "--account-url", azurite.account_url, *extra], env, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _folder(root: Path, *, size: int = 559_100) -> Path:
    root.mkdir(parents=True)
    (root / "scene.blend").write_bytes(os.urandom(size))
    return root


def test_push_prints_the_lines_to_paste_and_one_unit_style(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    ws = _folder(tmp_path / "ws")
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot20")
    assert code == 0, err
    manifest = out.splitlines()[-1].removeprefix("manifest ")
    assert HASH.fullmatch(manifest), out
    # the lines to paste are YAML that a spec reads as the pinned source
    paste = [ln for ln in out.splitlines() if not ln.startswith(("push:", "manifest "))]
    doc = yaml.safe_load("\n".join(paste))
    (entry,) = doc["assets"]
    assert AssetSource.model_validate(entry).model_dump() == {
        "name": "shot20",
        "container": "pins",
        "prefix": "shot20/",
        "dest": "",
        "manifest": manifest,
    }
    # 559,100 bytes: the same figure in the result line and in the summary on stderr
    sizes = re.findall(r"\((\d+(?:\.\d)? (?:B|kB|MB|GB))\)", out + err)
    assert sizes and set(sizes) == {"559.1 kB"}, out + err


SPEC = """\
# shot 20 lighting: pinned by assets push --write-spec
job_id: shot20-light   # the Batch job
storage: {{account_url: "http://127.0.0.1:1/devstoreaccount1", auth: {{kind: emulator}}}}
assets:
  - name: library
    container: pins
    prefix: library/
    manifest: "{old}"
  - name: shot          # this one
    container: pins
    prefix: shot20
    manifest: {pin}   # pinned
  - {{name: extra, container: other, prefix: shot20/}}
render:
  renderer: blender
  scene: scene.blend
  frames: 1-10
"""


def test_write_spec_updates_only_the_pin(azurite: AzuriteServer, tmp_path: Path) -> None:
    ws = _folder(tmp_path / "ws", size=2000)
    old = "a" * 64
    spec = tmp_path / "job.yaml"
    spec.write_text(SPEC.format(old=old, pin="latest"))
    spec.chmod(0o640)
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot20", "--write-spec", str(spec))
    assert code == 0, err
    m1 = out.splitlines()[-1].removeprefix("manifest ")
    assert spec.read_text() == SPEC.format(old=old, pin=f'"{m1}"')  # nothing else changed
    assert spec.stat().st_mode & 0o777 == 0o640
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".job.yaml")]

    (ws / "scene.blend").write_bytes(b"v2")
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot20/", "--write-spec", str(spec))
    assert code == 0, err
    m2 = out.splitlines()[-1].removeprefix("manifest ")
    assert m2 != m1 and spec.read_text() == SPEC.format(old=old, pin=f'"{m2}"')


def test_write_spec_adds_a_pin_in_the_entry_style(azurite: AzuriteServer, tmp_path: Path) -> None:
    ws = _folder(tmp_path / "ws", size=100)
    flow = tmp_path / "flow.yaml"
    flow.write_text("assets:\n  - {name: s, container: pins, prefix: p1/}\nrender: {}\n")
    code, out, err = _push(azurite, ws, tmp_path / "h", "p1", "--write-spec", str(flow))
    assert code == 0, err
    m = out.splitlines()[-1].removeprefix("manifest ")
    assert flow.read_text() == (
        f'assets:\n  - {{name: s, container: pins, prefix: p1/, manifest: "{m}"}}\nrender: {{}}\n'
    )
    block = tmp_path / "block.yaml"
    block.write_text("assets:\n- name: s\n  container: pins\n  prefix: p1\n# end\n")
    assert _push(azurite, ws, tmp_path / "h", "p1", "--write-spec", str(block))[0] == 0
    assert block.read_text() == (
        f'assets:\n- name: s\n  container: pins\n  prefix: p1\n  manifest: "{m}"\n# end\n'
    )
    js = tmp_path / "job.json"
    doc = {"job_id": "j", "assets": [{"name": "s", "container": "pins", "prefix": "p1/"}]}
    js.write_text(json.dumps(doc, indent=2) + "\n")
    assert _push(azurite, ws, tmp_path / "h", "p1", "--write-spec", str(js))[0] == 0
    assert json.loads(js.read_text())["assets"][0]["manifest"] == m


def test_write_spec_without_a_matching_entry_is_refused_before_uploading(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    ws = _folder(tmp_path / "ws", size=100)
    spec = tmp_path / "job.yaml"
    text = "assets:\n  - {name: s, container: pins, prefix: other/}\n"
    spec.write_text(text)
    code, out, err = _push(azurite, ws, tmp_path / "h", "nomatch", "--write-spec", str(spec))
    assert code == 2, out + err
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert errors == [
        f"node-agent: error: --write-spec '{spec}': no assets entry with container 'pins' and "
        "prefix 'nomatch/': add one (assets push without --write-spec prints it)"
    ], err
    assert spec.read_text() == text and "manifest" not in out
    assert not HASH.search(out + err)  # nothing was pushed


# --- manifest: latest ------------------------------------------------------------------
def _with_latest(spec: JobSpec) -> JobSpec:
    """The spec a file saying `manifest: latest` gives (built by copy: spec.py's pattern
    for a pin may not accept the word yet, see test_local_run_pins_latest_in_the_job_it_runs)."""
    source = spec.assets[0].model_copy(update={"manifest": LATEST})
    return spec.model_copy(update={"assets": [source]})


def _scene_folder(blender_scene: Path, dest: Path) -> Path:
    shutil.copytree(blender_scene, dest)
    return dest


def test_latest_is_pinned_before_the_job_runs_and_a_later_push_changes_nothing(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    """check_storage (what local run and batch submit call before anything runs) pins the
    last push; the spec handed to the nodes names it; a push after that reaches no node of
    this job, a late-joining one included; the next job gets the new push."""
    ws = _scene_folder(blender_scene, tmp_path / "ws")
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot30")
    assert code == 0, err
    m1 = out.splitlines()[-1].removeprefix("manifest ")
    doc = make_spec(azurite.account_url, "pins", "shot30", "job-latest")
    doc["render"] = {"renderer": "blender", "scene": "spin.blend", "frames": "1-2"}
    spec = _with_latest(spec_from_data(doc))
    log = logging.getLogger("test.pins")

    resolved = check_storage(spec, allow_missing=False, strict=False, log=log, where="test")
    assert resolved.assets[0].manifest == m1
    stored = tmp_path / "job.json"  # what local run / submit hand to the nodes
    stored.write_text(resolved.model_dump_json(indent=2))

    (ws / "textures" / "stripes.png").write_bytes(b"repainted")
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot30")
    assert code == 0, err
    m2 = out.splitlines()[-1].removeprefix("manifest ")
    assert m2 != m1

    assert json.loads(stored.read_text())["assets"][0]["manifest"] == m1
    r = run_job_prep(tmp_path / "node", "job-latest", stored)  # a node joining after the push
    assert r.returncode == 0, r.stderr
    view = node_of(tmp_path / "node", "job-latest").job_assets_dir()
    assert (view / "textures" / "stripes.png").read_bytes() == (
        blender_scene / "textures" / "stripes.png"
    ).read_bytes()
    again = check_storage(spec, allow_missing=False, strict=False, log=log, where="test")
    assert again.assets[0].manifest == m2  # the next job pins the new push


def test_latest_unresolved_on_a_node_is_refused_by_name(tmp_path: Path) -> None:
    """A spec that reached a node with `latest` (a job submitted by hand from job-json)
    is refused, not read as a manifest named 'latest'."""
    from node_agent.sync.manifest import ManifestSource

    source = AssetSource(name="shot", container="pins", prefix="p/").model_copy(
        update={"manifest": LATEST}
    )
    with pytest.raises(AssetError, match="manifest: latest reached the node unresolved"):
        ManifestSource(None, ContentStore(tmp_path), source).read()  # type: ignore[arg-type]


def test_local_run_pins_latest_in_the_job_it_runs(
    azurite: AzuriteServer, blender_scene: Path, tmp_path: Path
) -> None:
    ws = _scene_folder(blender_scene, tmp_path / "ws")
    code, out, err = _push(azurite, ws, tmp_path / "home", "shot31")
    assert code == 0, err
    m1 = out.splitlines()[-1].removeprefix("manifest ")
    doc = make_spec(azurite.account_url, "pins", "shot31", "job-latest-run", manifest=LATEST)
    doc["render"] = {"renderer": "blender", "scene": "spin.blend", "frames": "1"}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    pool = tmp_path / "pool"
    r = run_agent(["local", "run", str(spec), "--workdir", str(pool), "--nodes", "1"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"assets[0] 'scene': manifest: latest -> {m1}" in r.stdout  # pinned before any node
