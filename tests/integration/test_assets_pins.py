"""`assets push` pins (issue 13): the spec lines to paste, `--write-spec` updating the pin of
a job spec in place, one unit style for sizes; `manifest: latest` resolved to the hash when
the job is handed over (batch submit, local run), so a running job never sees a newer push.
Real Azurite, node-agent as a process."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml
from helpers import run_agent

from node_agent.azurite import AzuriteServer
from node_agent.spec import AssetSource

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
