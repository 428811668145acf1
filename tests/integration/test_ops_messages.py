"""issue 15: storage messages that do not mislead: a 401/403 names the credential variable
(lean REST path and SDK path), a missing secret variable is a usage error (2) before any
request, and "unreachable" and "not found" are never confused."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import yaml
from helpers import make_spec, node_env, run_agent, seed, write_spec

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore

WRONG_KEY = base64.b64encode(b"a wrong key for devstoreaccount1").decode()


def _key_spec(tmp_path: Path, url: str, container: str = "msgs", var: str = "MSG_KEY") -> Path:
    doc = make_spec(url, container, "p/")
    doc["policies"] = {"storage_retry_s": 1}
    doc["storage"] = {"account_url": url, "auth": {"kind": "account_key", "env": var}}
    return write_spec(tmp_path / "job.json", doc)


def _prep(root: Path, spec: Path, **env: str) -> tuple[int, str]:
    res = run_agent(["job-prep", "--spec", str(spec)], {**node_env(root, "job-a"), **env})
    said = [ln for ln in res.stderr.splitlines() if ln.startswith("node-agent: error:")]
    return res.returncode, "\n".join(said) or res.stderr


def test_access_denied_names_the_credential_variable(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    seed(store, "msgs", {"p/scene.blend": b"s"})
    spec = _key_spec(tmp_path, azurite.account_url)
    code, err = _prep(tmp_path / "node", spec, MSG_KEY=WRONG_KEY)
    assert code == 4, err
    first = err.splitlines()[0]
    assert "access denied (403" in first and "the account key in $MSG_KEY" in first, first
    assert WRONG_KEY not in err

    # the SDK path (doctor's probe, uploads) says the same
    doc = json.loads(spec.read_text())
    yspec = tmp_path / "job.yaml"
    yspec.write_text(yaml.safe_dump(doc))
    env = {**node_env(tmp_path / "node"), "MSG_KEY": WRONG_KEY}
    res = run_agent(["doctor", "--root", str(tmp_path / "node"), "--spec", str(yspec)], env)
    line = next(ln for ln in res.stdout.splitlines() if " storage " in ln)
    assert "FAIL" in line and "$MSG_KEY" in line and "access denied (403" in line, line


def test_a_missing_secret_variable_is_a_usage_error(tmp_path: Path, azurite: AzuriteServer) -> None:
    spec = _key_spec(tmp_path, azurite.account_url, var="MSG_NOT_SET")
    code, err = _prep(tmp_path / "node", spec)
    assert code == 2, err
    assert "storage.auth.env: environment variable MSG_NOT_SET is not set" in err


def test_unreachable_and_not_found_are_never_confused(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    down = make_spec("http://127.0.0.1:9/devstoreaccount1", "msgs-down", "p/")
    down["policies"] = {"storage_retry_s": 1}
    code, err = _prep(tmp_path / "n1", write_spec(tmp_path / "down.json", down))
    assert code == 4 and "unreachable" in err and "not found" not in err, err

    absent = make_spec(azurite.account_url, "no-such-container", "p/")
    code, err = _prep(tmp_path / "n2", write_spec(tmp_path / "absent.json", absent))
    assert code == 4 and "not found" in err and "unreachable" not in err, err


def test_local_run_refuses_a_missing_secret_variable_before_any_node_starts(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    spec = _key_spec(tmp_path, azurite.account_url, var="MSG_NOT_SET_LOCAL")
    env = {k: v for k, v in os.environ.items() if k != "MSG_NOT_SET_LOCAL"}
    res = run_agent(
        ["local", "run", str(spec), "--nodes", "1", "--workdir", str(tmp_path / "lp")], env
    )
    assert res.returncode == 2, res.stderr
    assert "environment variable MSG_NOT_SET_LOCAL is not set" in res.stderr
    assert not list((tmp_path / "lp").glob("*/nodes/*")), "a node was started"
