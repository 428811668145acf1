"""The renderer never sees a storage replica's own secret variable (storage.replicas[i].auth
.env, read by job prep's sync): phases/render_env withholds every secret variable of the
storage section (spec_storage.Storage.secret_vars), not only the primary's."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.task import standin_task

from node_agent.azurite import AzuriteServer

REPLICA_VAR = "REPLICA_ACCOUNT_KEY"
REPLICA_KEY = "cmVwbGljYS1rZXktZm9yLXRoZS10ZXN0"


def test_a_replicas_secret_variable_never_reaches_the_renderer(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    t = standin_task(
        tmp_path, azurite.account_url, "envdump.py", "{frame}", frames="1", task="task-replica"
    )
    t.doc["storage"]["replicas"] = [
        {
            "account_url": "https://replicaaccount.blob.core.windows.net",
            "auth": {"kind": "account_key", "env": REPLICA_VAR},
        }
    ]
    t.spec_path.write_text(json.dumps(t.doc))
    t.env[REPLICA_VAR] = REPLICA_KEY
    t.env["STUDIO_URL"] = f"https://example.invalid/?key={REPLICA_KEY}"  # carries the value
    assert t.run("1") == 0, t.stderr()
    seen = json.loads((t.out_dir.parent / "standin.json").read_text())["env"]
    assert REPLICA_VAR not in seen
    assert not [k for k, v in seen.items() if REPLICA_KEY in v]
    assert f"{REPLICA_VAR}" in t.stderr()  # said: not passed to the renderer
