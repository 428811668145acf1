"""The renderer gets no storage credential, and no form of a SAS reaches a log (issue 11,
case 9): a real `node-agent render` with SAS auth against Azurite, a stand-in renderer
that prints its environment and a SAS in every form a tool might print it; then the
renderer's environment and renderer.log as uploaded to $TaskLog are searched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from helpers import SAS_VAR, Task, azurite_sas, sas_sig, secret_forms, standin_task

from node_agent.azurite import AZURITE_KEY, AzuriteServer
from node_agent.redact import MASK
from node_agent.storage import BlobStore


def _keep_pool_config(t: Task, text: str) -> None:
    """`text` as the pool config the start task kept on the task's node."""
    state = Path(t.env["AZ_BATCH_NODE_ROOT_DIR"]) / "shared" / "node_agent" / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "pool-config.json").write_text(text)


def _pool_config(t: Task, key_var: str) -> None:
    """A pool config as the start task keeps it, naming a mount secret variable."""
    doc = {
        "mounts": [
            {
                "name": "refs",
                "driver": "azurefiles",
                "account_name": "studiofiles",
                "share": "refs",
                "key_env": key_var,
            }
        ]
    }
    _keep_pool_config(t, json.dumps(doc))


def _sas_task(
    tmp_path: Path, account_url: str, task: str, sas: str, auth: dict[str, Any], **render: Any
) -> Task:
    """A custom-renderer task whose stand-in prints its environment and, in every form, a SAS
    it learned some other way (a file); it authenticates with the SAS in $SAS_VAR (`auth`: the
    spec's other storage.auth keys)."""
    sas_file = tmp_path / "leaked-sas.txt"  # the "renderer" learns the SAS some other way
    sas_file.write_text(sas)
    t = standin_task(
        tmp_path,
        account_url,
        "hostile_outputs.py",
        "secrets",
        str(sas_file),
        task=task,
        frames="1",
        **render,
    )
    t.use_sas(sas, **auth)
    return t


def _renderer_log(store: BlobStore, t: Task, task: str) -> tuple[str, dict[str, str]]:
    """renderer.log as uploaded to $TaskLog, and the environment the stand-in printed in it."""
    log = store.read_blob(t.container, f"{task}/$TaskLog/renderer.log").decode()
    env_line = next(ln for ln in log.splitlines() if "env: {" in ln)
    return log, json.loads(env_line.split("env: ", 1)[1])


def test_renderer_gets_no_storage_secret_and_its_log_holds_no_form_of_it(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    sas = azurite_sas()
    task = "t-secrets"
    t = _sas_task(tmp_path, azurite.account_url, task, sas, {}, env={"STUDIO": "blue"})
    t.env["MOUNT_KEY_VAR"] = "mount-account-key-0123456789abcdef=="
    t.env["AZURE_STORAGE_CONNECTION_STRING"] = f"AccountName=x;AccountKey={AZURITE_KEY}"
    t.env["COPY_OF_THE_SAS"] = sas  # the same secret under another name
    _pool_config(t, "MOUNT_KEY_VAR")
    assert t.run("1") == 0, t.stderr()

    log, seen = _renderer_log(store, t, task)
    for var in (SAS_VAR, "MOUNT_KEY_VAR", "AZURE_STORAGE_CONNECTION_STRING", "COPY_OF_THE_SAS"):
        assert var not in seen, var
    assert seen["STUDIO"] == "blue"
    assert seen["AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN"] == MASK  # kept, and masked in the log
    assert "AZ_BATCH_ACCOUNT_URL" in seen
    assert "signature alone:" in log  # the lines were kept...
    texts = {"renderer.log": log}
    for b in store.list_blobs(t.container, f"{task}/$TaskLog/"):
        texts[b.name] = store.read_blob(t.container, b.name).decode(errors="replace")
    for p in t.node.task_dir.rglob("*"):
        if p.is_file():
            texts[str(p)] = p.read_text(errors="replace")
    leaks = [
        (where, form) for where, text in texts.items() for form, value in secret_forms(sas).items()
    ]
    leaks = [(w, f) for w, f in leaks if secret_forms(sas)[f] in texts[w]]
    assert leaks == []  # ...but no form of the secret


def test_the_storage_secret_reaches_the_renderer_only_by_the_loud_opt_in(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """storage.auth.expose_to_renderer: true passes $SAS_VAR (only it), with a warning."""
    sas = azurite_sas()
    task = "t-optin"
    auth = {"expose_to_renderer": True}
    t = _sas_task(tmp_path, azurite.account_url, task, sas, auth)
    t.env["AZURE_STORAGE_KEY"] = AZURITE_KEY
    assert t.run("1") == 0, t.stderr()
    log, seen = _renderer_log(store, t, task)
    assert SAS_VAR in seen and "AZURE_STORAGE_KEY" not in seen
    assert f"expose_to_renderer is on: the renderer gets ${SAS_VAR}" in t.stderr()
    assert sas_sig(sas) not in log and unquote(sas_sig(sas)) not in log  # still masked in logs


def test_fails_closed_when_the_pool_config_cannot_be_read_and_strips_values_containing_a_secret(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    """A kept pool config that cannot be read (a newer format, damage) cannot name the pool's
    mount secret variables: every secret-looking name is withheld instead. A variable whose
    value merely contains the SAS (a URL, a connection string) is withheld too."""
    sas = azurite_sas()
    task = "t-closed"
    t = _sas_task(tmp_path, azurite.account_url, task, sas, {}, env={"STUDIO": "blue"})
    t.env["FILES_MOUNT_KEY"] = "mount-account-key-0123456789abcdef=="
    t.env["ASSET_URL"] = f"https://acct.blob.core.windows.net/assets?{sas}"
    _keep_pool_config(t, '{"mounts": [{"name": "refs", "driver": "nfs9"}]}')
    assert t.run("1") == 0, t.stderr()
    log, seen = _renderer_log(store, t, task)
    assert "FILES_MOUNT_KEY" not in seen and "ASSET_URL" not in seen and SAS_VAR not in seen
    assert seen["STUDIO"] == "blue" and "AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN" in seen
