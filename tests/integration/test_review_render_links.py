"""A renderer (root on an elevated pool) plants links where node_agent writes or reads after
it: its output folder swapped for a link to another folder, a link at a name node_agent
writes in the task's folder. Nothing outside is read, uploaded or written. Real render task
(`node-agent render`), the hostile stand-in renderer, real Azurite."""

from __future__ import annotations

from pathlib import Path

from helpers import standin_task

from node_agent.azurite import AzuriteServer
from node_agent.storage import BlobStore


def test_an_output_folder_swapped_for_a_link_is_refused_not_uploaded(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "shadow").write_text("root:$6$secret:19000::::::\n")
    task = "swapped-output"  # the job's container is shared with other tests' tasks
    t = standin_task(
        tmp_path, azurite.account_url, "hostile_outputs.py", "swapdir", str(outside), task=task
    )
    rc = t.run("1")
    names = [b.name for b in store.list_blobs(t.container)] if _has(store, t.container) else []
    # nothing of the link's target is an output: not its files, not the frame written there
    assert [n for n in names if n.startswith(f"{task}/$TaskOutput/")] == [], names
    err = t.stderr()
    assert rc != 0 and "is a symbolic link" in err and "output folder" in err, err[-2000:]
    assert "Traceback" not in err


def test_a_link_planted_at_the_preview_name_is_not_written_through(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    victim = tmp_path / "outside" / "victim.conf"
    victim.parent.mkdir()
    victim.write_text("precious root-owned config\n")
    t = standin_task(
        tmp_path, azurite.account_url, "hostile_outputs.py", "plant", f"preview.png={victim}"
    )
    rc = t.run("1")
    assert victim.read_text() == "precious root-owned config\n", f"written through, rc={rc}"
    assert rc == 0, t.stderr()[-2000:]


def _has(store: BlobStore, container: str) -> bool:
    return any(c.name == container for c in store.service.list_containers())
