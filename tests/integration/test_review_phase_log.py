"""The phase log (<agent>/logs/<phase>_<job>_<task>.log: a predictable name in a node-wide
folder) never appends through a link planted at its name by an earlier task's renderer."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import make_task, standin

from node_agent.azurite import AzuriteServer


def test_the_phase_log_is_never_appended_through_a_planted_link(
    tmp_path: Path, azurite: AzuriteServer
) -> None:
    victim = tmp_path / "outside" / "victim.conf"
    victim.parent.mkdir()
    victim.write_text("precious\n")
    t = make_task(
        tmp_path,
        azurite.account_url,
        task="task-2",
        renderer="custom",
        frames="1",
        command=[standin("hostile_outputs.py"), "{output_dir}", "links"],
    )
    logs = t.node.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    os.symlink(victim, logs / "render_job-a_task-2.log")  # planted by task-1's renderer
    rc = t.run("1")
    text = victim.read_text()
    assert text == "precious\n", f"rc={rc}; victim now: {text[:300]!r}"
    log = logs / "render_job-a_task-2.log"
    assert not log.is_symlink() and "frame" in log.read_text()
    assert "was a symbolic link" in log.read_text() + t.stderr(), t.stderr()[-1500:]
