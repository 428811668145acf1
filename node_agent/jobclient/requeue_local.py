"""`job requeue --failed --local WORKDIR`: the failed tasks' frames rendered again on the same
local pool, as a new job `<job>-rq<n>` of exactly those frames (same frames per task), whose
frames go to the original job's container: `job download JOB` then has every frame."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from node_agent.conventions import job_container
from node_agent.errors import UsageError
from node_agent.frames import format_frames
from node_agent.jobclient.local import POOL_DIR, LocalBackend
from node_agent.runtime import write_atomic


def requeue_local(
    backend: LocalBackend, say: Callable[[str], None], nodes: int | None = None
) -> tuple[str, int]:
    """Run the requeue job; (its id, its exit code)."""
    from node_agent.localpool.pool import run_local_job

    view = backend.snapshot()
    if not view.finished:
        raise UsageError(
            f"job {backend.job_id} still runs on the local pool: requeue after it ends"
        )
    failed = sorted({f for t in view.failed() for f in t.frames})
    if not failed:
        say(f"job {backend.job_id}: no failed task; nothing to requeue")
        return backend.job_id, 0
    spec = backend.spec()
    if spec is None:
        raise UsageError(
            f"job {backend.job_id}: its spec is no longer on the pool's nodes: pass --spec"
        )
    pool = backend.workdir / POOL_DIR
    n = 1
    while (pool / f"job-{backend.job_id}-rq{n}.json").exists():
        n += 1
    new_id = f"{backend.job_id}-rq{n}"
    out = spec.render.output
    render = spec.render.model_copy(
        update={
            "frames": format_frames(failed),
            "output": out.model_copy(
                update={"container": out.container or job_container(backend.job_id)}
            ),
        }
    )
    new = spec.model_copy(update={"job_id": new_id, "render": render})
    spec_file = pool / f"requeue-{new_id}.json"
    write_atomic(spec_file, json.dumps(new.model_dump(mode="json"), indent=2).encode())
    count = nodes or len(view.nodes) or 1
    say(
        f"requeue: job {new_id} renders the {len(failed)} failed frame(s) "
        f"{format_frames(failed)} of job {backend.job_id} on {count} node(s); "
        f"its frames go to {new.render.output.container}"
    )
    code = run_local_job(Path(spec_file), nodes=count, slots=1, workdir=backend.workdir)
    return new_id, code
