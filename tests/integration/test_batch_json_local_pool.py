"""The generated Batch job JSON, run unchanged by the local pool against Azurite."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from helpers import stand_in_job_doc

from node_agent.azurite import AzuriteServer
from node_agent.batch.jobjson import job_json, local_plan
from node_agent.batch.pooljson import BatchPoolSettings
from node_agent.localpool.node import LocalNode, TaskRun
from node_agent.localpool.pool import make_nodes, run_job_on_nodes
from node_agent.spec import spec_from_data
from node_agent.storage import BlobStore


@dataclass
class RecordingNode(LocalNode):
    """A real local node that also notes the command line of every task it runs."""

    commands: list[tuple[str, str, str]] = field(default_factory=list)

    def run(
        self,
        kind: str,
        command_line: str,
        task_dir: Path,
        extra_env: dict[str, str],  # type: ignore[override]
        attempt: int = 0,
        resource_files: dict[str, bytes] | None = None,
        cancel: threading.Event | None = None,
    ) -> TaskRun:
        self.commands.append((kind, task_dir.name, command_line))
        return super().run(kind, command_line, task_dir, extra_env, attempt, resource_files, cancel)


def test_local_pool_runs_the_generated_job_json_unchanged(
    tmp_path: Path, azurite: AzuriteServer, store: BlobStore
) -> None:
    doc, state = stand_in_job_doc(
        azurite.account_url,
        store,
        tmp_path,
        "batch-json-local",
        frames="1-6",
        frames_per_task=2,
    )
    spec = spec_from_data(doc)
    batch_doc = json.loads(
        json.dumps(job_json(spec, BatchPoolSettings()))
    )  # exactly what job-json prints
    nodes = []
    for n in make_nodes(tmp_path / "pool", "localpool", 2):
        nodes.append(RecordingNode(n.node_id, n.root, n.pool_id, n.token))
    result = run_job_on_nodes(spec, local_plan(batch_doc), list(nodes), 1)
    assert result.exit_code == 0 and result.failed_tasks == []
    ran = {(tid, cmd) for n in nodes for kind, tid, cmd in n.commands if kind == "task"}
    assert ran == {(t["id"], t["commandLine"]) for t in batch_doc["tasks"]}
    preps = {cmd for n in nodes for kind, _, cmd in n.commands if kind == "jobpreparation"}
    assert preps == {batch_doc["job"]["jobPreparationTask"]["commandLine"]}
    releases = {cmd for n in nodes for kind, _, cmd in n.commands if kind == "jobrelease"}
    assert releases == {batch_doc["job"]["jobReleaseTask"]["commandLine"]}
    rendered = sorted(int(x.split()[0]) for x in (state / "rendered.txt").read_text().splitlines())
    assert rendered == [1, 2, 3, 4, 5, 6]
