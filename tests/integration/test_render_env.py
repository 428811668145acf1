"""The renderer's environment and command line: entitlement, placeholders, dry-run."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import make_task, run_agent, standin, standin_task

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

TOKEN = "entitlement-token-3f9a2b7c1d"  # what conftest.node_env gives the task
ODD = "shots/my \"best\" shot; rm -rf $HOME `x` 'q'.blend"


def _doc(url: str, **render: object) -> dict[str, object]:
    from helpers import make_spec_doc

    return make_spec_doc(url, **render)


def test_entitlement_vars_reach_the_renderer_unchanged_and_never_a_log(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        "{frame}",
        frames="1",
        env={"STUDIO": "blue"},
    )
    assert t.run("1") == 0, t.stderr()
    seen = json.loads((t.out_dir.parent / "standin.json").read_text())["env"]
    assert (
        seen["AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN"] == t.env["AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN"]
    )
    assert seen["AZ_BATCH_ACCOUNT_URL"] == t.env["AZ_BATCH_ACCOUNT_URL"]
    assert seen["STUDIO"] == "blue"
    # the renderer printed it: redacted in its log; in no file node-agent wrote, no blob
    assert "entitlement: ***" in (t.node.task_dir / "renderer.log").read_text()
    for p in [*t.node.task_dir.rglob("*"), *t.node.logs_dir.rglob("*")]:
        if p.is_file() and p.name != "standin.json":
            assert TOKEN not in p.read_text(errors="replace"), p
    for b in store.list_blobs(t.container, "task-1/$TaskLog/"):
        assert TOKEN not in store.read_blob(t.container, b.name).decode(errors="replace"), b.name


def test_validate_refuses_entitlement_override_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    doc = _doc("http://127.0.0.1:1/devstoreaccount1", env={"AZ_BATCH_ACCOUNT_URL": "https://x"})
    spec.write_text(json.dumps(doc))
    r = run_agent(["validate", str(spec)])
    assert r.returncode == 2
    assert "AZ_BATCH_ACCOUNT_URL" in r.stderr and "Traceback" not in r.stderr


def test_odd_placeholder_value_reaches_the_renderer_as_one_argument(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        "{frame}",
        "--",
        "{scene}",
        "x{scene}y",
        frames="1",
        scene=ODD,
    )
    assert t.run("1") == 0, t.stderr()
    argv = json.loads((t.out_dir.parent / "standin.json").read_text())["argv"]
    scene = str(t.node.job_assets_dir() / ODD)
    assert argv[-2:] == [scene, f"x{scene}y"]
    assert not (Path.home() / "x").exists()


def test_dry_run_prints_command_and_env_with_token_redacted(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    t = standin_task(
        tmp_path,
        azurite.account_url,
        "envdump.py",
        "{start}",
        "{end}",
        frames="1-3",
        scene="a b.blend",
        env={"STUDIO_API_KEY": "hunter2-secret-value", "STUDIO": "blue"},
    )
    r = run_agent(t.args("1-3", "--dry-run"), t.env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "command: " + standin("envdump.py") in out
    assert f"argv[1]: {t.out_dir}" in out and "argv[2]: 1" in out and "argv[3]: 3" in out
    assert "env: AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN=***" in out
    assert "env: STUDIO=blue" in out and "env: STUDIO_API_KEY=***" in out
    assert TOKEN not in out + r.stderr and "hunter2-secret-value" not in out
    assert not (t.out_dir.parent / "standin.json").exists()  # nothing ran


def test_dry_run_shows_extra_args_where_the_adapter_puts_them(tmp_path: Path) -> None:
    t = make_task(
        tmp_path,
        "http://127.0.0.1:1/devstoreaccount1",  # a dry run touches no storage
        renderer="blender",
        executable="/opt/blender/blender",
        scene="a b.blend",
        frames="1-3",
        extra_args=["-E", "CYCLES", "--log-file", "{task_dir}/b log.txt", "--", ODD],
    )
    r = run_agent(t.args("1-3", "--dry-run"), t.env)
    assert r.returncode == 0, r.stderr
    argv = [line.split(": ", 1)[1] for line in r.stdout.splitlines() if line.startswith("argv[")]
    scene = str(t.node.job_assets_dir() / "a b.blend")
    assert argv[:4] == ["/opt/blender/blender", "-b", scene, "-noaudio"]
    log_file = f"{t.node.task_dir}/b log.txt"
    assert argv[-8:] == ["-E", "CYCLES", "--log-file", log_file, "-f", "1,2,3", "--", ODD]
