"""issue 15: doctor's blind spots: an unwritable cache (tried, not read from mode bits), a
corrupt state record, and a secret variable this shell does not have."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from helpers import agent_dir, make_spec, make_spec_doc, node_env, run_agent, seed, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


@contextmanager
def unwritable(folder: Path) -> Iterator[str]:
    """`chattr -R +i` where the file system supports it, else a read-only bind mount."""
    if subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True).returncode == 0:
        try:
            yield "chattr -R +i"
        finally:
            subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
        return
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield "read-only bind mount"
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _checks(res: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return list(json.loads(res.stdout)["checks"])


def test_an_unwritable_cache_is_a_doctor_failure_and_a_clear_job_prep_error(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    seed(store, "ro-cache", {"p/scene.blend": b"scene"})
    doc = make_spec(azurite.account_url, "ro-cache", "p/")
    spec = write_spec(tmp_path / "job.json", doc)
    assert run_agent(["job-prep", "--spec", str(spec)], node_env(root, "job-a")).returncode == 0
    cache = agent_dir(root) / "cache"
    ok = run_agent(["doctor", "--root", str(root), "--json"])
    assert any(c["name"] == "writable" and c["ok"] for c in _checks(ok)), ok.stdout

    with unwritable(cache) as how:
        res = run_agent(["doctor", "--root", str(root), "--json"])
        assert res.returncode == 20, (how, res.stdout)
        bad = {c["name"]: c for c in _checks(res) if str(c["name"]).startswith("writable")}
        assert set(bad) == {f"writable cache{s}" for s in ("", " objects", " locks", " tmp")}
        assert str(cache / "locks") in str(bad["writable cache locks"]["detail"])
        assert not any(c["ok"] for c in bad.values())

        prep = run_agent(["job-prep", "--spec", str(spec)], node_env(root, "job-b"))
        assert prep.returncode == 6, (how, prep.stderr)
        assert "internal error" not in prep.stderr and "PermissionError" not in prep.stderr
        assert f"node-agent: error: cannot write to the cache folder {cache}" in prep.stderr


def test_a_corrupt_mount_record_is_a_failure_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    mounts = agent_dir(root) / "state" / "mounts.json"
    mounts.write_text('[{"name": "library", "target": ')  # cut short
    res = run_agent(["doctor", "--root", str(root)])
    assert res.returncode == 20
    line = next(ln for ln in res.stdout.splitlines() if "records" in ln)
    assert line.lstrip().startswith("FAIL") and str(mounts) in line and "not valid JSON" in line


def test_a_secret_variable_missing_in_this_shell_is_not_a_storage_failure(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    root = tmp_path / "node"
    assert run_agent(["start-task"], node_env(root)).returncode == 0
    doc = make_spec_doc(azurite.account_url)
    doc["storage"] = {
        "account_url": azurite.account_url,
        "auth": {"kind": "account_key", "env": "RENDER_STORAGE_KEY"},
    }
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(doc))
    env = {k: v for k, v in node_env(root).items() if not k.startswith("AZ_BATCH")}
    env.pop("RENDER_STORAGE_KEY", None)
    res = run_agent(["doctor", "--root", str(root), "--spec", str(spec)], env)
    line = next(ln for ln in res.stdout.splitlines() if " storage " in ln)
    assert "FAIL" not in line and "credential not available in this shell" in line, line
    assert "export RENDER_STORAGE_KEY=" in line
    assert res.returncode == 0, res.stdout
