"""Spec documents that mean what they say, checked in-process: a prefix is a folder (case 5), output
patterns the uploader would skip are refused (case 6), duplicate keys are refused (case 12), a
size cap (case 15). The sync side of case 5 is in tests/integration/test_spec_integrity.py."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import yaml
from helpers import (
    CliResult,
    run_cli,
)

from node_agent.errors import SpecError
from node_agent.spec import spec_from_data

MIB = 1024 * 1024  # the documented cap (node_agent.spec.MIB)


GOOD: dict[str, object] = {
    "job_id": "j1",
    "storage": {
        "account_url": "http://127.0.0.1:10000/devstoreaccount1",
        "auth": {"kind": "emulator"},
    },
    "assets": [{"name": "scene", "container": "assets", "prefix": "p/"}],
    "render": {"renderer": "blender", "scene": "spin.blend", "frames": "1-10"},
}


def _validate(f: Path) -> CliResult:
    return run_cli(["validate", str(f)])


def _one_line_exit_2(res: CliResult) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("node-agent: error: "), lines[0]
    return lines[0].removeprefix("node-agent: error: ")


def test_both_spellings_of_a_prefix_validate_to_the_same_model(tmp_path: Path) -> None:
    models = []
    for prefix in ("shot01", "shot01/", "shot01///"):
        doc = copy.deepcopy(GOOD)
        doc["assets"] = [{"name": "scene", "container": "assets", "prefix": prefix}]
        f = tmp_path / "job.yaml"
        f.write_text(yaml.safe_dump(doc))
        assert _validate(f).returncode == 0
        models.append(spec_from_data(doc))
    assert models[0] == models[1] == models[2]
    assert models[0].assets[0].prefix == "shot01/"
    # no prefix stays the container's root
    doc = copy.deepcopy(GOOD)
    doc["assets"] = [{"name": "scene", "container": "assets"}]
    assert spec_from_data(doc).assets[0].prefix == ""


REFUSED_PATTERNS = [
    (".frame_####", "starts with '.'"),
    ("._####", "starts with '.'"),
    ("frame..####", "'..'"),
    ("..####", "starts with '.'"),
    ("frames\\f_####", "not a frame file name pattern"),
    ("C:f_####", "not a frame file name pattern"),
    ("/tmp/f_####", "not a frame file name pattern"),
    ("sub/.f_####", "not a frame file name pattern"),
]


def test_output_pattern_the_uploader_would_skip_is_refused(tmp_path: Path) -> None:
    for pattern, words in REFUSED_PATTERNS:
        doc = copy.deepcopy(GOOD)
        doc["render"] = {**doc["render"], "output": {"pattern": pattern}}  # type: ignore[dict-item]
        f = tmp_path / "job.yaml"
        f.write_text(yaml.safe_dump(doc))
        line = _one_line_exit_2(_validate(f))
        assert line.startswith(f"{f}: render.output.pattern: ") and words in line, line
    for pattern in ("frame_####", "beauty.####", "shot01-v2_####_x", "f.#"):
        doc = copy.deepcopy(GOOD)
        doc["render"] = {**doc["render"], "output": {"pattern": pattern}}  # type: ignore[dict-item]
        assert spec_from_data(doc).render.output.pattern == pattern


DUP_YAML = """\
job_id: j1
storage:
  account_url: http://127.0.0.1:10000/devstoreaccount1
  auth: {kind: emulator}
assets:
  - name: scene
    container: assets
    prefix: p/
render:
  renderer: custom
  command: [render, "{scene}"]
  scene: spin.blend
  frames: "1-10"
  renderer: blender
"""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (DUP_YAML, "render.renderer: key given twice (line 14)"),
        (
            DUP_YAML.replace("    prefix: p/\n", "    prefix: p/\n    prefix: q/\n"),
            "assets[0].prefix: key given twice (line 9)",
        ),
        ("job_id: j1\n" + DUP_YAML, "job_id: key given twice (line 2)"),
        (
            DUP_YAML.replace('frames: "1-10"\n', 'frames: "1-10"\n  options: {a: 1, "a": 2}\n'),
            "render.options.a: key given twice (line 14)",
        ),
    ],
)
def test_duplicate_yaml_key_is_refused(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(text)
    line = _one_line_exit_2(_validate(f))
    assert line == f"{f}: {where}", line
    # a YAML merge key is not a duplicate: explicit keys override merged ones
    merged = DUP_YAML.replace("  renderer: blender\n", "").replace(
        "render:\n", "x-base: &b {renderer: blender, scene: other.blend}\nrender:\n  <<: *b\n"
    )
    f.write_text(merged)
    line = _one_line_exit_2(_validate(f))
    assert line == f"{f}: x-base: is not a known field", line


def _json_with_dup(depth: str) -> str:
    body = {
        "job_id": "j1",
        "storage": {
            "account_url": "http://127.0.0.1:10000/devstoreaccount1",
            "auth": {"kind": "emulator"},
        },
        "assets": [{"name": "scene", "container": "assets", "prefix": "p/"}],
        "render": {
            "renderer": "custom",
            "command": ["render", "{scene}"],
            "scene": "spin.blend",
            "frames": "1-10",
        },
    }
    text = json.dumps(body, indent=2)
    if depth == "render":
        return text.replace('"frames": "1-10"', '"frames": "1-10",\n    "renderer": "blender"')
    if depth == "auth":
        return text.replace('"kind": "emulator"', '"kind": "emulator", "kind": "sas"')
    return text.replace('"prefix": "p/"', '"prefix": "p/", "prefix": "q/"')


@pytest.mark.parametrize(
    ("depth", "where"),
    [
        ("render", "render.renderer: key given twice"),
        ("auth", "storage.auth.kind: key given twice"),
        ("assets", "assets[0].prefix: key given twice"),
    ],
)
def test_duplicate_json_key_is_refused(tmp_path: Path, depth: str, where: str) -> None:
    f = tmp_path / "job.json"
    f.write_text(_json_with_dup(depth))
    line = _one_line_exit_2(_validate(f))
    assert line.startswith(f"{f}: {where}"), line


def test_spec_over_the_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    doc = copy.deepcopy(GOOD)
    n = MIB // 25 + 1000
    doc["render"] = {**doc["render"], "env": {f"VAR_{i:07d}": "x" * 10 for i in range(n)}}  # type: ignore[dict-item]
    f = tmp_path / "big.yaml"
    f.write_text(yaml.safe_dump(doc))
    size = f.stat().st_size
    assert size > MIB
    t0 = time.monotonic()
    line = _one_line_exit_2(_validate(f))
    assert time.monotonic() - t0 < 10
    assert str(f) in line and f"{size:,} bytes" in line and "1 MiB" in line, line
    j = tmp_path / "big.json"
    j.write_text(json.dumps(doc))
    line = _one_line_exit_2(_validate(j))
    assert str(j) in line and "1 MiB" in line, line
    # a big but legitimate spec still validates
    doc["render"] = {**doc["render"], "env": {f"VAR_{i:07d}": "x" * 10 for i in range(30_000)}}  # type: ignore[dict-item]
    j.write_text(json.dumps(doc))
    assert 0.5 * MIB < j.stat().st_size <= MIB
    res = _validate(j)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("which", ["start task", "batch"])
def test_pool_configs_share_the_spec_reader(tmp_path: Path, which: str) -> None:
    """Both pool config loaders refuse a key given twice and a file over the cap, one line."""
    from node_agent.batch.pooljson import load_pool_settings as load_batch
    from node_agent.poolconfig import load_node_config as load_node

    load = load_node if which == "start task" else load_batch
    twice = tmp_path / "pool.yaml"
    twice.write_text("health:\n  min_free_disk_gb: 5\n  min_free_disk_gb: 50\n")
    with pytest.raises(SpecError, match=r"min_free_disk_gb: key given twice \(line 3\)"):
        load(twice)
    big = tmp_path / "big.json"
    big.write_text('{"x": "' + "a" * (2 * 1024 * 1024) + '"}')
    with pytest.raises(SpecError, match="big.json"):
        load(big)
