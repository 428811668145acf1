"""Bad job specs: one line per error naming the field, exit code 2, no traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from helpers import CliResult, run_cli

from node_agent.errors import SpecError
from node_agent.frames import chunk_frames, format_frames, parse_frames
from node_agent.spec import load_spec, spec_from_data

_RENDER: dict[str, object] = {"renderer": "blender", "scene": "spin.blend", "frames": "1-10"}
GOOD = {
    "job_id": "j1",
    "storage": {
        "account_url": "http://127.0.0.1:10000/devstoreaccount1",
        "auth": {"kind": "emulator"},
    },
    "assets": [{"name": "scene", "container": "assets", "prefix": "p/"}],
    "render": _RENDER,
}


def _with(path: str, value: object) -> dict:
    doc = copy.deepcopy(GOOD)
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


def _validate_cli(tmp_path: Path, doc: object) -> CliResult:
    """`node-agent validate` of `doc` in-process (tests/integration/test_spec_cli.py runs the
    same check as a process, to prove the edge)."""
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(doc))
    return run_cli(["validate", str(f)])


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("render.renderer", "povray", "render.renderer", "'povray' is not one of"),
        ("render.frames", "1-x", "render.frames", "'1-x' is not a frame"),
        ("render.frames", "10-1", "render.frames", "ends before it starts"),
        ("render.scene", None, "render.scene", "is required"),
        ("render.scene", "../../etc/passwd", "render.scene", "must stay inside"),
        ("render.frames_per_task", "many", "render.frames_per_task", "valid integer"),
        ("render.timeout_s", [1], "render.timeout_s", "valid integer"),
        ("assets", [], "assets", "at least 1"),
        ("storage.auth", {"kind": "sas"}, "storage.auth", "needs 'env'"),
        ("render.colour", "red", "render.colour", "is not a known field"),
        ("render.command", ["x", "{bogus}"], "render.command", "unknown placeholder '{bogus}'"),
        (
            "render.env",
            {"AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN": "x"},
            "render.env",
            "cannot be overridden",
        ),
        (
            "render.env",
            {"AZ_BATCH_ACCOUNT_URL": "https://evil"},
            "render.env",
            "cannot be overridden",
        ),
        ("render.frames", "1-1000000000", "render.frames", "more than"),
        # hostile templates and paths
        ("render.command", ["x", "{scene.__class__}"], "render.command", "unknown placeholder"),
        ("render.command", ["x", "{0}"], "render.command", "unknown placeholder"),
        ("render.command", ["x", "{frame!r}"], "render.command", "no format spec"),
        ("render.command", ["/bin/sh", "-c", "render {scene}"], "render.command", "'sh -c'"),
        ("render.command", ["cmd.exe", "/c", "r.bat {frame}"], "render.command", "'cmd /c'"),
        ("render.command", ["python3", "-c", "f('{scene}')"], "render.command", "interpreted"),
        ("render.output", {"prefix": "../other-job"}, "render.output.prefix", "'..'"),
        ("render.output", {"prefix": "/abs"}, "render.output.prefix", "relative blob prefix"),
        ("render.output", {"pattern": "../../x_####"}, "render.output.pattern", "not a frame"),
        (
            "assets",
            [{"name": "s", "container": "assets", "prefix": "a/../b/"}],
            "assets[0].prefix",
            "'..'",
        ),
        ("render.path_map", {"C:\\proj\\": "../../etc"}, "render.path_map", "must stay inside"),
        ("job_id", "../x", "job_id", "not a Batch job id"),
        # render.extra_args: the same checks as a template, and one or the other
        ("render.extra_args", ["-t", "{bogus}"], "render.extra_args", "unknown placeholder"),
        ("render.extra_args", ["{frame:04d}"], "render.extra_args", "no format spec"),
        ("render.extra_args", ["{scene!r}"], "render.extra_args", "no format spec"),
        ("render.extra_args", "-t 4", "render.extra_args", "valid list"),
        (
            "render.extra_args",
            ["--python-expr", "load('{scene}')"],
            "render.extra_args",
            "blender '--python-expr' runs would be interpreted",
        ),
        (
            "render",
            {**_RENDER, "renderer": "maya", "extra_args": ["-preRender", 'source "{task_dir}"']},
            "render.extra_args",
            "maya '-preRender' runs",
        ),
        (
            "render",
            {**_RENDER, "executable": "/bin/bash", "extra_args": ["-c", "r {scene}"]},
            "render.extra_args",
            "'bash -c'",
        ),
        (
            "render",
            {**_RENDER, "command": ["r", "{scene}"], "extra_args": ["-t", "4"]},
            "render.extra_args",
            "'command' (replaces the adapter's command) or 'extra_args' (extends it), not both",
        ),
        (
            "render",
            {**_RENDER, "renderer": "custom", "command": ["r"], "extra_args": ["-t"]},
            "render.extra_args",
            "renderer 'custom' has no adapter command to extend",
        ),
    ],
)
def test_bad_spec_one_line_exit_2(
    tmp_path: Path, path: str, value: object, field: str, words: str
) -> None:
    res = _validate_cli(tmp_path, _with(path, value))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f": {field}: " in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def test_good_spec_validates(tmp_path: Path) -> None:
    res = _validate_cli(tmp_path, GOOD)
    assert res.returncode == 0, res.stderr
    assert "10 frames" in res.stdout


def test_extra_args_validate_with_placeholders_in_their_own_arguments(tmp_path: Path) -> None:
    args = [
        "-E",
        "CYCLES",
        "--python-expr",
        "import bpy",
        "-P",
        "{assets_dir}/x.py",
        "--",
        "{scene}",
    ]
    res = _validate_cli(tmp_path, _with("render.extra_args", args))
    assert res.returncode == 0, res.stderr
    assert load_spec(tmp_path / "job.yaml").render.extra_args == args


def test_unreadable_documents(tmp_path: Path) -> None:
    bad = tmp_path / "job.yaml"
    bad.write_text("render: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="must be a mapping"):
        spec_from_data(["a"])


def test_frame_sets() -> None:
    assert parse_frames("1-5") == [1, 2, 3, 4, 5]
    assert parse_frames("1-10x3") == [1, 4, 7, 10]
    assert parse_frames("1,5,10-12") == [1, 5, 10, 11, 12]
    assert parse_frames("3,1,3") == [1, 3]
    for text in ["1-4", "1-10x3", "1,5,10-12", "7"]:
        assert parse_frames(format_frames(parse_frames(text))) == parse_frames(text)
    assert chunk_frames(list(range(1, 11)), 4) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    for bad in ["", "a", "1-", "5-1", "1-5x0", "1--5"]:
        with pytest.raises(ValueError):
            parse_frames(bad)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Three problems in three places, one a cross-field rule (issue 13): three lines, each
    naming its field, exit 2 (the cross-field rules used to wait for the others to pass)."""
    doc = copy.deepcopy(GOOD)
    doc["assets"] = [GOOD["assets"][0], GOOD["assets"][0]]  # type: ignore[index]
    doc["render"] = {"renderer": "custom", "scene": "spin.blend", "frames": "1-x"}
    res = _validate_cli(tmp_path, doc)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, lines
    fields = sorted(line.split("job.yaml: ")[1].split(": ")[0] for line in lines)
    assert fields == ["assets", "render.command", "render.frames"], lines
    assert "asset source names must be unique: scene given twice" in res.stderr
    assert "renderer 'custom' needs a 'command' template" in res.stderr


def test_command_refuses_a_placeholder_in_renderer_code(tmp_path: Path) -> None:
    """render.command gets extra_args' inline-code check: `{frame}` inside --python-expr."""
    cmd = ["blender", "-b", "{scene}", "--python-expr", "f = {frame}"]
    res = _validate_cli(tmp_path, _with("render.command", cmd))
    assert res.returncode == 2, res.stderr
    assert "render.command: a placeholder in the code that blender '--python-expr' runs" in (
        res.stderr
    )
