"""The renderer gets no storage credential, and no form of a SAS reaches a log (issue 11,
case 9): a real `node-agent render` with SAS auth against Azurite, a stand-in renderer
that prints its environment and a SAS in every form a tool might print it; then the
renderer's environment and renderer.log as uploaded to $TaskLog are searched."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

from helpers import SAS_VAR, azurite_sas, make_task, sas_sig, secret_forms, standin

from node_agent.azurite import AZURITE_KEY, AzuriteServer
from node_agent.redact import MASK
from node_agent.storage import BlobStore


def _pool_config(t_root: Path, key_var: str) -> None:
    """A pool config as the start task keeps it, naming a mount secret variable."""
    state = t_root / "shared" / "node_agent" / "state"
    state.mkdir(parents=True, exist_ok=True)
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
    (state / "pool-config.json").write_text(json.dumps(doc))


def test_renderer_gets_no_storage_secret_and_its_log_holds_no_form_of_it(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    sas = azurite_sas()
    sas_file = tmp_path / "leaked-sas.txt"  # the "renderer" learns the SAS some other way
    sas_file.write_text(sas)
    task = "t-secrets"
    t = make_task(
        tmp_path,
        azurite.account_url,
        task=task,
        renderer="custom",
        frames="1",
        command=[standin("hostile_outputs.py"), "{output_dir}", "secrets", str(sas_file)],
        env={"STUDIO": "blue"},
    )
    t.doc["storage"]["auth"] = {"kind": "sas", "env": SAS_VAR}
    t.spec_path.write_text(json.dumps(t.doc))
    t.env[SAS_VAR] = sas
    t.env["MOUNT_KEY_VAR"] = "mount-account-key-0123456789abcdef=="
    t.env["AZURE_STORAGE_CONNECTION_STRING"] = f"AccountName=x;AccountKey={AZURITE_KEY}"
    t.env["COPY_OF_THE_SAS"] = sas  # the same secret under another name
    _pool_config(Path(t.env["AZ_BATCH_NODE_ROOT_DIR"]), "MOUNT_KEY_VAR")
    assert t.run("1") == 0, t.stderr()

    log = store.read_blob(t.container, f"{task}/$TaskLog/renderer.log").decode()
    env_line = next(ln for ln in log.splitlines() if "env: {" in ln)
    seen = json.loads(env_line.split("env: ", 1)[1])
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
    sas_file = tmp_path / "leaked-sas.txt"
    sas_file.write_text(sas)
    task = "t-optin"
    t = make_task(
        tmp_path,
        azurite.account_url,
        task=task,
        renderer="custom",
        frames="1",
        command=[standin("hostile_outputs.py"), "{output_dir}", "secrets", str(sas_file)],
    )
    t.doc["storage"]["auth"] = {"kind": "sas", "env": SAS_VAR, "expose_to_renderer": True}
    t.spec_path.write_text(json.dumps(t.doc))
    t.env[SAS_VAR] = sas
    t.env["AZURE_STORAGE_KEY"] = AZURITE_KEY
    assert t.run("1") == 0, t.stderr()
    log = store.read_blob(t.container, f"{task}/$TaskLog/renderer.log").decode()
    seen = json.loads(next(ln for ln in log.splitlines() if "env: {" in ln).split("env: ", 1)[1])
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
    sas_file = tmp_path / "leaked-sas.txt"
    sas_file.write_text(sas)
    task = "t-closed"
    t = make_task(
        tmp_path,
        azurite.account_url,
        task=task,
        renderer="custom",
        frames="1",
        command=[standin("hostile_outputs.py"), "{output_dir}", "secrets", str(sas_file)],
        env={"STUDIO": "blue"},
    )
    t.doc["storage"]["auth"] = {"kind": "sas", "env": SAS_VAR}
    t.spec_path.write_text(json.dumps(t.doc))
    t.env[SAS_VAR] = sas
    t.env["FILES_MOUNT_KEY"] = "mount-account-key-0123456789abcdef=="
    t.env["ASSET_URL"] = f"https://acct.blob.core.windows.net/assets?{sas}"
    state = Path(t.env["AZ_BATCH_NODE_ROOT_DIR"]) / "shared" / "node_agent" / "state"
    state.mkdir(parents=True, exist_ok=True)
    (state / "pool-config.json").write_text('{"mounts": [{"name": "refs", "driver": "nfs9"}]}')
    assert t.run("1") == 0, t.stderr()
    log = store.read_blob(t.container, f"{task}/$TaskLog/renderer.log").decode()
    seen = json.loads(next(ln for ln in log.splitlines() if "env: {" in ln).split("env: ", 1)[1])
    assert "FILES_MOUNT_KEY" not in seen and "ASSET_URL" not in seen and SAS_VAR not in seen
    assert seen["STUDIO"] == "blue" and "AZ_BATCH_SOFTWARE_ENTITLEMENT_TOKEN" in seen
